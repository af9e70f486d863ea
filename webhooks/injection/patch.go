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
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// Patch injects the pod encoded in raw and returns the JSON patch that turns raw into the
// injected pod. A pod that is not injected gets an empty patch; a pod that cannot run meshed
// (see CheckNamespace, CheckInjectValue and the annotation overrides) is an error that says why.
//
// The patch is built, not diffed: each operation sets one whole member of an object that exists
// in raw (the annotations one by one; initContainers, volumes and containers as whole arrays
// that keep the pod's own elements as they were sent), so it applies to raw whatever the pod's
// arrays hold, and it keeps fields of the pod that this package's Go types do not know.
func Patch(raw []byte, ns Namespace, cfg Config) ([]jsonpatch.Operation, error) {
	doc, pod, err := decodePod(raw)
	if err != nil {
		return nil, err
	}
	if err := CheckInjectValue(pod); err != nil {
		return nil, err
	}
	if ShouldInject(pod).Reason != "" {
		return []jsonpatch.Operation{}, nil
	}
	if err := CheckNamespace(ns); err != nil {
		return nil, err
	}
	add, err := plan(pod, ns.Name, cfg)
	if err != nil {
		return nil, err
	}
	return add.patch(doc)
}

// decodePod reads raw as a JSON object and as a Pod that agree with each other, and with what
// a JSON patch applies to: keys match case-sensitively and a repeated key counts once (the last),
// as in the API server's decoder and in the JSON-patch library it applies patches with.
func decodePod(raw []byte) (map[string]any, *corev1.Pod, error) {
	if !json.Valid(raw) {
		return nil, nil, errors.New("decoding pod: not one valid JSON value")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers keep their text
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("decoding pod: %w", err)
	}
	if doc == nil {
		return nil, nil, errors.New("decoding pod: the object is null")
	}
	canonical, err := json.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding pod: %w", err)
	}
	var pod corev1.Pod
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(canonical, &pod); err != nil {
		return nil, nil, fmt.Errorf("decoding pod: %w", err)
	}
	return doc, &pod, nil
}

// patch turns the additions into operations against doc, the pod as sent.
func (a *additions) patch(doc map[string]any) ([]jsonpatch.Operation, error) {
	var ops []jsonpatch.Operation
	// set makes parent[key] = value at path: "replace" where the member has a value, "add"
	// where it is missing or null (add sets an object member whether or not it exists).
	set := func(parent map[string]any, key, path string, value any) {
		op := "add"
		if parent != nil && parent[key] != nil {
			op = "replace"
		}
		ops = append(ops, jsonpatch.Operation{Operation: op, Path: path, Value: value})
	}

	meta, _ := doc["metadata"].(map[string]any)
	switch annotations, _ := meta["annotations"].(map[string]any); {
	case meta == nil:
		set(doc, "metadata", "/metadata", map[string]any{"annotations": a.annotations})
	case annotations == nil:
		set(meta, "annotations", "/metadata/annotations", a.annotations)
	default:
		for _, k := range slices.Sorted(maps.Keys(a.annotations)) {
			set(annotations, k, "/metadata/annotations/"+escapePointer(k), a.annotations[k])
		}
	}

	spec, _ := doc["spec"].(map[string]any)
	if spec == nil {
		value := map[string]any{"initContainers": a.initContainers, "volumes": a.volumes}
		if a.serviceAccountName != "" {
			value["serviceAccountName"] = a.serviceAccountName
		}
		set(doc, "spec", "/spec", value)
		return ops, nil
	}
	if a.serviceAccountName != "" {
		set(spec, "serviceAccountName", "/spec/serviceAccountName", a.serviceAccountName)
	}
	own, _ := spec["initContainers"].([]any)
	initContainers := make([]any, 0, len(a.initContainers)+len(own))
	for _, c := range a.initContainers {
		initContainers = append(initContainers, c)
	}
	set(spec, "initContainers", "/spec/initContainers", append(initContainers, own...))

	volumes, _ := spec["volumes"].([]any)
	volumes = slices.Clone(volumes)
	for _, v := range a.volumes {
		volumes = append(volumes, v)
	}
	set(spec, "volumes", "/spec/volumes", volumes)

	if len(a.probes) > 0 {
		containers, err := a.rewriteProbes(spec["containers"])
		if err != nil {
			return nil, err
		}
		set(spec, "containers", "/spec/containers", containers)
	}
	return ops, nil
}

// rewriteProbes returns the pod's containers as sent, with the rewritten probes' handlers
// replaced and every other field of the probes and containers kept.
func (a *additions) rewriteProbes(sent any) ([]any, error) {
	containers, _ := sent.([]any)
	containers = slices.Clone(containers)
	for _, r := range a.probes {
		if r.container >= len(containers) {
			return nil, fmt.Errorf("container %d of the pod is missing from its JSON", r.container)
		}
		c, _ := containers[r.container].(map[string]any)
		c = maps.Clone(c)
		if c == nil {
			c = map[string]any{}
		}
		probe, _ := c[r.field].(map[string]any)
		probe = maps.Clone(probe)
		if probe == nil {
			probe = map[string]any{}
		}
		for _, handler := range []string{"exec", "httpGet", "tcpSocket", "grpc"} {
			delete(probe, handler)
		}
		handler, err := toJSONObject(r.handler)
		if err != nil {
			return nil, err
		}
		maps.Copy(probe, handler)
		c[r.field] = probe
		containers[r.container] = c
	}
	return containers, nil
}

// toJSONObject is v as a JSON object.
func toJSONObject(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", v, err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decoding %T: %w", v, err)
	}
	return out, nil
}

// escapePointer escapes a key for use in a JSON pointer (RFC 6901).
func escapePointer(key string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}
