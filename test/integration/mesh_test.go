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
	"encoding/json"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/test/testenv"
)

// sampleMesh reads config/samples/mesh_v1alpha1_mesh.yaml: the spec a user starts from.
func sampleMesh() *meshv1.Mesh {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "samples", "mesh_v1alpha1_mesh.yaml"))
	Expect(err).NotTo(HaveOccurred())
	var m meshv1.Mesh
	Expect(yaml.UnmarshalStrict(raw, &m)).To(Succeed())
	return &m
}

// deleteMesh removes the default Mesh, waits until it is gone, and removes what it owned.
func deleteMesh(ctx context.Context) {
	m := &meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshName}}
	Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, m))).To(Succeed())
	Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(m), m))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	collectGarbage(ctx)
}

// collectGarbage stands in for kube-controller-manager's garbage collector, which envtest does
// not run: it deletes every object knit made (they all carry its part-of label), as the
// collector would once their owner is gone. Namespaces stay: envtest cannot finalize them.
// cert-manager's Secrets outlive their Certificates in a real cluster too; they go here so
// that no spec starts from a certificate an earlier spec's issuer signed.
func collectGarbage(ctx context.Context) {
	GinkgoHelper()
	var secrets corev1.SecretList
	Expect(k8sClient.List(ctx, &secrets, client.InNamespace(cpNamespace))).To(Succeed())
	for i := range secrets.Items {
		if _, issued := secrets.Items[i].Annotations[cmapi.CertificateNameKey]; issued {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, &secrets.Items[i]))).To(Succeed())
		}
	}
	ours := client.MatchingLabels{meshv1.LabelPartOf: meshv1.PartOfValue}
	lists := []client.ObjectList{
		&meshv1.MeshRevisionList{}, &rbacv1.ClusterRoleList{}, &rbacv1.ClusterRoleBindingList{},
		&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ServiceAccountList{},
		&policyv1.PodDisruptionBudgetList{}, &corev1.ConfigMapList{}, &gatewayv1.GatewayList{},
		&cmapi.CertificateList{}, &cmapi.IssuerList{}, &admissionregistrationv1.MutatingWebhookConfigurationList{},
		&corev1.SecretList{}, // the CA Issuer's copy of the root (knit-issuing-ca)
	}
	// CertificateRequests are owned by Certificates and carry no labels of ours.
	Expect(k8sClient.DeleteAllOf(ctx, &cmapi.CertificateRequest{}, client.InNamespace("knit-system"))).To(Succeed())
	for _, list := range lists {
		Expect(k8sClient.List(ctx, list, ours)).To(Succeed())
		Expect(meta.EachListItem(list, func(o runtime.Object) error {
			return client.IgnoreNotFound(k8sClient.Delete(ctx, o.(client.Object)))
		})).To(Succeed())
	}
}

var _ = Describe("The sample Mesh", Ordered, func() {
	ctx := context.Background()
	BeforeAll(func() { deleteMesh(ctx) })
	AfterAll(func() { deleteMesh(ctx) })

	It("is accepted and defaulted by the API server", func() {
		Expect(k8sClient.Create(ctx, sampleMesh())).To(Succeed())

		var got meshv1.Mesh
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &got)).To(Succeed())
		s := got.Spec
		Expect(s.Version).To(Equal("v0.1.0"))
		Expect(s.Upgrade.Strategy).To(Equal(meshv1.UpgradeRevisionBased))
		Expect(s.Upgrade.BatchSize).To(BeEquivalentTo(5))
		Expect(s.Trust.TrustDomain).To(Equal("cluster.local"))
		Expect(s.Trust.IssuerRef).To(BeNil())
		Expect(s.Trust.WorkloadCertDuration.Duration).To(Equal(24 * time.Hour))
		Expect(s.Trust.WorkloadCertRenewBefore.Duration).To(Equal(8 * time.Hour))
		Expect(s.MTLS.Mode).To(Equal(meshv1.MTLSPermissive))
		Expect(s.Injection.FailurePolicy).To(Equal(meshv1.FailurePolicyFail))
		Expect(s.Injection.ProxyLogLevel).To(BeEquivalentTo("info"))
		Expect(s.Injection.ProxyResources.Requests.Cpu().String()).To(Equal("10m"))
		Expect(s.Injection.ProxyResources.Limits.Memory().String()).To(Equal("128Mi"))
		Expect(s.Observability.AccessLogFormat).To(BeEquivalentTo("Off"))
		Expect(s.Observability.Metrics.Enabled).To(HaveValue(BeTrue()))
		Expect(s.ControlPlane.Namespace).To(Equal("knit-system"))
		Expect(s.ControlPlane.Replicas).To(BeEquivalentTo(2))
	})

	It("is seen by the operator: every condition appears with a reason and a message", func() {
		var got meshv1.Mesh
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, meshv1.ConditionReconciled)).To(BeTrue())
		}).WithTimeout(30 * time.Second).Should(Succeed())

		for _, t := range meshv1.MeshConditionTypes {
			c := meta.FindStatusCondition(got.Status.Conditions, t)
			Expect(c).NotTo(BeNil(), "condition %s", t)
			Expect(c.ObservedGeneration).To(Equal(got.Generation), "condition %s", t)
			Expect(c.Reason).NotTo(BeEmpty(), "condition %s", t)
			Expect(c.Message).NotTo(BeEmpty(), "condition %s", t)
		}
		Expect(got.Status.DesiredVersion).To(Equal("v0.1.0"))
		Expect(got.Status.ActiveRevision).To(Equal("default-v0-1-0"))
	})

	It("shows in kubectl get whether the operator has observed the current spec", func() {
		// What kubectl get prints: the API server's table of the printer columns.
		cs, err := kubernetes.NewForConfig(env.Config)
		Expect(err).NotTo(HaveOccurred())
		raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/apis/mesh.knit.dev/v1alpha1/meshes").
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
		Expect(err).NotTo(HaveOccurred(), string(raw))
		var table metav1.Table
		Expect(json.Unmarshal(raw, &table)).To(Succeed(), string(raw))
		column := map[string]int{}
		for i, c := range table.ColumnDefinitions {
			column[c.Name] = i
		}
		Expect(column).To(HaveKey("Generation"))
		Expect(column).To(HaveKey("Observed"))
		Expect(table.Rows).To(HaveLen(1))
		var got meshv1.Mesh
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &got)).To(Succeed())
		Expect(table.Rows[0].Cells[column["Generation"]]).To(BeNumerically("==", got.Generation))
		Expect(table.Rows[0].Cells[column["Observed"]]).To(BeNumerically("==", got.Status.ObservedGeneration))
	})

	It("records the new generation after a spec change", func() {
		var got meshv1.Mesh
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &got)).To(Succeed())
		patch := client.MergeFrom(got.DeepCopy())
		got.Spec.ControlPlane.Replicas = 3
		Expect(k8sClient.Patch(ctx, &got, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
			c := meta.FindStatusCondition(got.Status.Conditions, meshv1.ConditionReconciled)
			g.Expect(c.ObservedGeneration).To(Equal(got.Generation))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("refuses a second Mesh", func() {
		second := sampleMesh()
		second.Name = "second"
		err := k8sClient.Create(ctx, second)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("Mesh is a cluster singleton: its name must be 'default'"))

		err = k8sClient.Create(ctx, sampleMesh())
		Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "got %v", err)
	})
})
