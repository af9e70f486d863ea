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

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/controllers"
)

// grantApproval lets the operator grant its control plane approval for a signer, as README
// ("Your own issuer") tells a cluster admin to do for any issuer but the bootstrapped default.
func grantApproval(ctx context.Context, name, signer string) {
	GinkgoHelper()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"cert-manager.io"}, Resources: []string{"signers"},
			Verbs: []string{"approve"}, ResourceNames: []string{signer}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: operatorServiceAccount, Namespace: operatorNamespace}},
	}
	for _, obj := range []client.Object{role, binding} {
		Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, obj))).To(Succeed())
	}
}

// runMeshIn creates the sample Mesh with its control plane in ns and waits for its injection
// webhook, which exists once cert-manager has issued the serving certificate.
func runMeshIn(ctx context.Context, ns string) {
	GinkgoHelper()
	grantApproval(ctx, "approve-"+ns, "issuers.cert-manager.io/"+ns+".knit-ca")
	m := sampleMesh()
	m.Spec.ControlPlane.Namespace = ns
	Expect(k8sClient.Create(ctx, m)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit-injector-v0-1-0"}, &admissionregistrationv1.MutatingWebhookConfiguration{})).To(Succeed())
		g.Expect(getMesh(g).Finalizers).To(ContainElement(controllers.MeshFinalizer))
	}).WithTimeout(90 * time.Second).Should(Succeed())
}

// deleteMeshOnly deletes the Mesh and waits until the operator's finalizer let it go. The
// suite has no garbage collector, so what is gone afterwards the operator removed itself.
func deleteMeshOnly(ctx context.Context) {
	GinkgoHelper()
	m := &meshv1.Mesh{ObjectMeta: metav1.ObjectMeta{Name: meshv1.MeshName}}
	Expect(k8sClient.Delete(ctx, m)).To(Succeed())
	Eventually(func() bool {
		return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKeyFromObject(m), m))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
}

var _ = Describe("Deleting the Mesh", Ordered, func() {
	ctx := context.Background()
	BeforeAll(func() { deleteMesh(ctx) })
	AfterEach(func() {
		deleteMesh(ctx)
		for _, ns := range []string{"knit-gone", "knit-kept"} {
			Expect(k8sClient.DeleteAllOf(ctx, &cmapi.CertificateRequest{}, client.InNamespace(ns))).To(Succeed())
		}
	})

	It("removes the injection webhooks, then the control-plane namespace the operator created and that holds only knit's objects", func() {
		runMeshIn(ctx, "knit-gone")
		var ns corev1.Namespace
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit-gone"}, &ns)).To(Succeed())
		Expect(ns.OwnerReferences).To(BeEmpty(), "the garbage collector would delete the namespace with everything in it")
		Expect(ns.Annotations).To(HaveKeyWithValue(controllers.AnnotationCreatedBy, "knit-operator"))
		formerlyMeshed := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "formerly-meshed",
			Labels: map[string]string{meshv1.LabelRevision: revision}}}
		Expect(k8sClient.Create(ctx, formerlyMeshed)).To(Succeed())

		deleteMeshOnly(ctx)

		var mwcs admissionregistrationv1.MutatingWebhookConfigurationList
		Expect(k8sClient.List(ctx, &mwcs, client.MatchingLabels{meshv1.LabelPartOf: meshv1.PartOfValue})).To(Succeed())
		Expect(mwcs.Items).To(BeEmpty(), "webhook configurations left after the Mesh is gone")
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit-gone"}, &ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).NotTo(BeNil(), "the namespace the operator created is being deleted")

		By("creating a pod in a formerly meshed namespace: admitted as it is")
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "formerly-meshed"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}}}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		Expect(pod.Spec.Containers).To(HaveLen(1))
		Expect(pod.Spec.InitContainers).To(BeEmpty())
	})

	It("keeps the control-plane namespace, and the user's Issuer and Secret in it, when it holds objects knit did not make", func() {
		runMeshIn(ctx, "knit-kept")
		userSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "corp-root-ca", Namespace: "knit-kept"},
			StringData: map[string]string{"note": "a CA a person keeps here"}}
		userIssuer := &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-issuer", Namespace: "knit-kept"},
			Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "corp-root-ca"}}}}
		Expect(k8sClient.Create(ctx, userSecret)).To(Succeed())
		Expect(k8sClient.Create(ctx, userIssuer)).To(Succeed())

		deleteMeshOnly(ctx)

		var ns corev1.Namespace
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit-kept"}, &ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil())
		Expect(ns.OwnerReferences).To(BeEmpty())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(userSecret), userSecret)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(userIssuer), userIssuer)).To(Succeed())
		Eventually(func(g Gomega) {
			var events corev1.EventList
			g.Expect(k8sClient.List(ctx, &events)).To(Succeed())
			var notes []string
			for _, e := range events.Items {
				if e.Reason == "NamespaceKept" {
					notes = append(notes, e.Message)
				}
			}
			g.Expect(notes).To(ContainElement(ContainSubstring("Namespace knit-kept stays: it holds objects knit did not make (Issuer corp-issuer, Secret corp-root-ca)")))
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})
})
