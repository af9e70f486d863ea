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

package integration

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

func duration(s string) metav1.Duration {
	d, err := time.ParseDuration(s)
	Expect(err).NotTo(HaveOccurred())
	return metav1.Duration{Duration: d}
}

func gateway(name, namespace string) meshv1.GatewaySpec {
	return meshv1.GatewaySpec{Name: name, Namespace: namespace,
		Ports: []meshv1.GatewayPort{{Name: "http", Port: 80}}}
}

// expectRefused asserts the API server refused a write as Invalid with a message that contains
// what the user must read to fix it.
func expectRefused(err error, message string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred(), "the API server accepted it")
	Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
	Expect(err.Error()).To(ContainSubstring(message))
}

var _ = Describe("An invalid Mesh", func() {
	ctx := context.Background()

	// Each entry is created with dry-run: the API server runs all of its validation and admission
	// but stores nothing, so entries do not depend on each other or on the sample Mesh.
	DescribeTable("is refused on create with a message that says what to fix",
		func(mutate func(*meshv1.Mesh), message string) {
			m := sampleMesh()
			mutate(m)
			expectRefused(k8sClient.Create(ctx, m, client.DryRunAll), message)
		},
		Entry("a name other than default", func(m *meshv1.Mesh) { m.Name = "prod" },
			"Mesh is a cluster singleton: its name must be 'default'"),
		Entry("no version", func(m *meshv1.Mesh) { m.Spec.Version = "" },
			"spec.version"),
		Entry("a version that is not a release", func(m *meshv1.Mesh) { m.Spec.Version = "1.2" },
			"version must be a release such as v0.1.0"),
		Entry("an unknown upgrade strategy", func(m *meshv1.Mesh) { m.Spec.Upgrade.Strategy = "BlueGreen" },
			`spec.upgrade.strategy: Unsupported value: "BlueGreen": supported values: "RevisionBased", "InPlace"`),
		Entry("an upgrade batch of zero", func(m *meshv1.Mesh) { m.Spec.Upgrade.BatchSize = -1 },
			"spec.upgrade.batchSize: Invalid value: -1: spec.upgrade.batchSize in body should be greater than or equal to 1"),
		Entry("a trust domain that is not a DNS name", func(m *meshv1.Mesh) { m.Spec.Trust.TrustDomain = "Cluster_Local" },
			"trust.trustDomain must be a lowercase DNS name such as cluster.local"),
		Entry("a workload certificate shorter than an hour", func(m *meshv1.Mesh) {
			m.Spec.Trust.WorkloadCertDuration = duration("30m")
			m.Spec.Trust.WorkloadCertRenewBefore = duration("10m")
		}, "trust.workloadCertDuration must be between 1h and 2160h (90 days)"),
		Entry("a workload certificate longer than 90 days", func(m *meshv1.Mesh) {
			m.Spec.Trust.WorkloadCertDuration = duration("9000h")
		}, "trust.workloadCertDuration must be between 1h and 2160h (90 days)"),
		Entry("a renew-before under five minutes", func(m *meshv1.Mesh) {
			m.Spec.Trust.WorkloadCertRenewBefore = duration("1m")
		}, "trust.workloadCertRenewBefore must be at least 5m"),
		Entry("a renew-before not shorter than the duration", func(m *meshv1.Mesh) {
			m.Spec.Trust.WorkloadCertDuration = duration("24h")
			m.Spec.Trust.WorkloadCertRenewBefore = duration("48h")
		}, "trust.workloadCertRenewBefore must be shorter than trust.workloadCertDuration"),
		Entry("an issuerRef of an unknown kind", func(m *meshv1.Mesh) {
			m.Spec.Trust.IssuerRef = &meshv1.IssuerReference{Name: "ca", Kind: "Secret"}
		}, `spec.trust.issuerRef.kind: Unsupported value: "Secret": supported values: "Issuer", "ClusterIssuer"`),
		Entry("an unknown mTLS mode", func(m *meshv1.Mesh) { m.Spec.MTLS.Mode = "ON" },
			`spec.mtls.mode: Unsupported value: "ON": supported values: "STRICT", "PERMISSIVE"`),
		Entry("an unknown injection failure policy", func(m *meshv1.Mesh) { m.Spec.Injection.FailurePolicy = "Maybe" },
			`spec.injection.failurePolicy: Unsupported value: "Maybe": supported values: "Fail", "Ignore"`),
		Entry("an unknown proxy log level", func(m *meshv1.Mesh) { m.Spec.Injection.ProxyLogLevel = "trace" },
			`spec.injection.proxyLogLevel: Unsupported value: "trace"`),
		Entry("too many control-plane replicas", func(m *meshv1.Mesh) { m.Spec.ControlPlane.Replicas = 50 },
			"spec.controlPlane.replicas in body should be less than or equal to 10"),
		Entry("a control-plane namespace that is not a DNS label", func(m *meshv1.Mesh) { m.Spec.ControlPlane.Namespace = "Knit.System" },
			"controlPlane.namespace must be a DNS label"),
		Entry("a gateway name that is not a DNS label", func(m *meshv1.Mesh) {
			m.Spec.Gateways = []meshv1.GatewaySpec{gateway("Ingress_1", "gw")}
		}, "gateways[].name must be a DNS label"),
		Entry("two gateways with one name", func(m *meshv1.Mesh) {
			m.Spec.Gateways = []meshv1.GatewaySpec{gateway("ingress", "gw"), gateway("ingress", "gw2")}
		}, `spec.gateways[1]: Duplicate value: {"name":"ingress"}`),
		Entry("a gateway without ports", func(m *meshv1.Mesh) {
			g := gateway("ingress", "gw")
			g.Ports = nil
			m.Spec.Gateways = []meshv1.GatewaySpec{g}
		}, "spec.gateways[0].ports: Required value"),
		Entry("tracing sampled with nowhere to send spans", func(m *meshv1.Mesh) {
			m.Spec.Observability.Tracing = &meshv1.TracingSpec{SamplingPercent: 10}
		}, "observability.tracing.endpoint is required when observability.tracing.samplingPercent is above 0"),
		Entry("a tracing endpoint that is a URL", func(m *meshv1.Mesh) {
			m.Spec.Observability.Tracing = &meshv1.TracingSpec{Endpoint: "http://collector:4317", SamplingPercent: 10}
		}, "observability.tracing.endpoint must be host:port"),
		Entry("a sampling percentage above 100", func(m *meshv1.Mesh) {
			m.Spec.Observability.Tracing = &meshv1.TracingSpec{Endpoint: "collector:4317", SamplingPercent: 150}
		}, "spec.observability.tracing.samplingPercent in body should be less than or equal to 100"),
	)

	Context("changing an immutable field of the stored Mesh", Ordered, func() {
		BeforeAll(func() {
			deleteMesh(ctx)
			m := sampleMesh()
			m.Spec.Gateways = []meshv1.GatewaySpec{gateway("ingress", "gateways")}
			Expect(k8sClient.Create(ctx, m)).To(Succeed())
		})
		AfterAll(func() { deleteMesh(ctx) })

		DescribeTable("is refused with a message that says what to do instead",
			func(mutate func(*meshv1.Mesh), message string) {
				// A merge patch carries no resourceVersion, so the operator's status writes cannot
				// make it conflict: the refusal comes from validation alone.
				var m meshv1.Mesh
				Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
				patch := client.MergeFrom(m.DeepCopy())
				mutate(&m)
				expectRefused(k8sClient.Patch(ctx, &m, patch), message)
			},
			Entry("the trust domain", func(m *meshv1.Mesh) { m.Spec.Trust.TrustDomain = "example.org" },
				"trust.trustDomain is immutable: changing it would change every workload identity"),
			Entry("the control-plane namespace", func(m *meshv1.Mesh) { m.Spec.ControlPlane.Namespace = "mesh" },
				"controlPlane.namespace is immutable"),
			Entry("a gateway's namespace", func(m *meshv1.Mesh) { m.Spec.Gateways[0].Namespace = "elsewhere" },
				"gateways[].namespace is immutable"),
		)

		It("refuses a spec.version more than one minor release from the running one, saying to go one minor at a time", func() {
			// status.version as the operator writes it once the mesh runs v0.1.0.
			Eventually(func(g Gomega) {
				m := getMesh(g)
				patch := client.MergeFrom(m.DeepCopy())
				m.Status.Version = "v0.1.0"
				g.Expect(k8sClient.Status().Patch(ctx, m, patch)).To(Succeed())
			}).WithTimeout(10 * time.Second).Should(Succeed())
			try := func(version string) error {
				var m meshv1.Mesh
				Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
				patch := client.MergeFrom(m.DeepCopy())
				m.Spec.Version = version
				return k8sClient.Patch(ctx, &m, patch, client.DryRunAll)
			}
			expectRefused(try("v0.3.0"), "spec.version v0.3.0 is more than one minor release away from the running v0.1.0 "+
				"(status.version): upgrade one minor release at a time")
			expectRefused(try("v1.1.0"), "spec.version v1.1.0 is more than one minor release away")
			Expect(try("v0.2.0")).To(Succeed(), "the next minor release")
			Expect(try("v0.1.1")).To(Succeed(), "a patch release")
			Expect(try("v0.0.9")).To(Succeed(), "the previous minor release, as a rollback (the release table decides the rest)")
		})

		It("accepts a change of a mutable field", func() {
			var m meshv1.Mesh
			Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			patch := client.MergeFrom(m.DeepCopy())
			m.Spec.MTLS.Mode = meshv1.MTLSStrict
			m.Spec.Upgrade.Strategy = meshv1.UpgradeInPlace
			Expect(k8sClient.Patch(ctx, &m, patch)).To(Succeed())
		})
	})
})
