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
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

func TestControlPlaneGetsTheMeshsWorkloadCertificateSettings(t *testing.T) {
	mesh := &meshv1.Mesh{Spec: meshv1.MeshSpec{Trust: meshv1.TrustSpec{
		WorkloadCertDuration:    metav1.Duration{Duration: 2 * time.Hour},
		WorkloadCertRenewBefore: metav1.Duration{Duration: 30 * time.Minute},
	}}}
	args, err := injectionArgs(mesh, "proxy:1", &meshv1.MeshRevision{Spec: meshv1.MeshRevisionSpec{Version: "v0.1.0", Namespace: "knit-system"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--identity-addr=:15012", "--workload-cert-duration=2h0m0s",
		"--workload-cert-renew-before=30m0s", "--approve-workload-certificates=true", "--mtls-mode=PERMISSIVE"} {
		if !slices.Contains(args, want) {
			t.Errorf("control-plane args %q lack %q", args, want)
		}
	}

	mesh.Spec.MTLS.Mode = meshv1.MTLSStrict
	if args, _ := injectionArgs(mesh, "proxy:1", &meshv1.MeshRevision{}); !slices.Contains(args, "--mtls-mode=STRICT") {
		t.Errorf("STRICT is not passed on: %q", args)
	}
	mesh.Annotations = map[string]string{meshv1.AnnotationWorkloadCertificateApprover: meshv1.ApproverExternal}
	if args := identityArgs(mesh); !slices.Contains(args, "--approve-workload-certificates=false") {
		t.Errorf("with approval left to another approver, args are %q", args)
	}
}

// The test-only lifetime reaches the control plane only when the operator was started with it.
func TestControlPlaneGetsTheTestWorkloadCertDurationOnlyWhenSet(t *testing.T) {
	if args := testWorkloadCertArgs(0); len(args) != 0 {
		t.Errorf("off by default, got %q", args)
	}
	if args := testWorkloadCertArgs(90 * time.Second); !slices.Equal(args, []string{"--test-workload-cert-duration=1m30s"}) {
		t.Errorf("got %q", args)
	}
}

func TestControlPlaneGetsTheMeshsObservabilityOnlyWhenSet(t *testing.T) {
	rev := &meshv1.MeshRevision{Spec: meshv1.MeshRevisionSpec{Version: "v0.1.0", Namespace: "knit-system"}}
	args, err := injectionArgs(&meshv1.Mesh{}, "proxy:1", rev)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--tracing-") || a == "--no-proxy-metrics" {
			t.Errorf("a Mesh without observability settings passes %s (it would roll control planes of earlier releases)", a)
		}
	}
	mesh := &meshv1.Mesh{Spec: meshv1.MeshSpec{Observability: meshv1.ObservabilitySpec{
		Metrics: meshv1.MetricsSpec{Enabled: ptr.To(false)},
		Tracing: &meshv1.TracingSpec{Endpoint: "otel-collector.observability:4317", SamplingPercent: 0},
	}}}
	args, err = injectionArgs(mesh, "proxy:1", rev)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--tracing-endpoint=otel-collector.observability:4317", "--tracing-sampling-percent=0", "--no-proxy-metrics"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
}
