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

package controllers

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
)

// notYetImplemented names the spec fields set to something other than their default that have
// no effect yet (their doc comments say "not yet implemented"). Defaults are accepted silently:
// they describe what happens today.
func notYetImplemented(spec *meshv1.MeshSpec) []string {
	var out []string
	add := func(set bool, format string, args ...any) {
		if set {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	o := spec.Observability
	add(o.Metrics.Enabled != nil && !*o.Metrics.Enabled, "observability.metrics.enabled=false (proxies serve metrics regardless)")
	add(o.Tracing != nil && (o.Tracing.Endpoint != "" || o.Tracing.SamplingPercent > 0), "observability.tracing")
	return out
}

// reportUnimplemented sets SpecSupported: False naming every field the mesh does not honour
// yet, so a spec that asks for more than the mesh does is never shown as simply Ready.
func reportUnimplemented(mesh *meshv1.Mesh) {
	fields := notYetImplemented(&mesh.Spec)
	if len(fields) == 0 {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionSpecSupported, metav1.ConditionTrue,
			meshv1.ReasonAsExpected, "every field set in spec is in effect")
		return
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionSpecSupported, metav1.ConditionFalse,
		meshv1.ReasonNotYetImplemented, "not yet implemented, so without effect: %s; remove them or set their defaults",
		strings.Join(fields, ", "))
}
