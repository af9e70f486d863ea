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
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// Gateway proxies report as the Mesh's observability says, through the same environment
// sidecars get (injection.ObservabilityEnv), named after their Gateway in spans.
func TestGatewayProxiesGetTheMeshsObservability(t *testing.T) {
	mesh := &meshv1.Mesh{Spec: meshv1.MeshSpec{Observability: meshv1.ObservabilitySpec{
		AccessLogFormat: "JSON",
		Metrics:         meshv1.MetricsSpec{Enabled: ptr.To(false)},
		Tracing:         &meshv1.TracingSpec{Endpoint: "otel-collector.observability:4317", SamplingPercent: 20},
	}}}
	gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "infra"}}
	spec := desiredGatewayDeployment(gw, gatewayRuntime{Observability: meshObservability(mesh)}, gatewayParameters{Replicas: 1}, []int32{80})
	env := map[string]string{}
	for _, e := range spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	for k, v := range map[string]string{"KNIT_ACCESS_LOG": "JSON", "KNIT_METRICS": "off", "KNIT_TRACING_ENDPOINT": "otel-collector.observability:4317",
		"KNIT_TRACING_SAMPLING_PERCENT": "20", "KNIT_TRACING_SERVICE_NAME": "edge.infra"} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}

	spec = desiredGatewayDeployment(gw, gatewayRuntime{Observability: meshObservability(&meshv1.Mesh{})}, gatewayParameters{Replicas: 1}, []int32{80})
	for _, e := range spec.Template.Spec.Containers[0].Env {
		switch e.Name {
		case "KNIT_METRICS", "KNIT_TRACING_ENDPOINT":
			t.Errorf("a Mesh without observability settings sets %s=%q", e.Name, e.Value)
		case "KNIT_ACCESS_LOG":
			if e.Value != "Off" {
				t.Errorf("KNIT_ACCESS_LOG=%q by default, want Off", e.Value)
			}
		}
	}
}
