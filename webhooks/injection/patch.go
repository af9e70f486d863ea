/*
Copyright 2026 The knit Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package injection

import (
	"encoding/json"
	"fmt"
	"sort"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Patch injects the pod encoded in raw and returns the JSON patch from raw to the injected pod,
// in a stable order. A pod that is not injected gets an empty patch.
func Patch(raw []byte, namespace string, cfg Config) ([]jsonpatch.Operation, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return nil, fmt.Errorf("decoding pod: %w", err)
	}
	if ShouldInject(&pod).Reason != "" {
		return []jsonpatch.Operation{}, nil
	}
	// Diff against the pod as Go encodes it, not the raw request: otherwise fields the Go types
	// always encode (an empty resources, status) would show up as changes.
	before, err := json.Marshal(&pod)
	if err != nil {
		return nil, fmt.Errorf("encoding pod: %w", err)
	}
	if err := Inject(&pod, namespace, cfg); err != nil {
		return nil, err
	}
	injected, err := json.Marshal(&pod)
	if err != nil {
		return nil, fmt.Errorf("encoding injected pod: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(before, injected)
	if err != nil {
		return nil, fmt.Errorf("computing patch: %w", err)
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Path < ops[j].Path })
	return ops, nil
}
