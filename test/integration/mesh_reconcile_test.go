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
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

const (
	cpNamespace = "knit-system"
	revision    = "default-v0-1-0"
	cpName      = "knit-controlplane-v0-1-0"
)

var cpKey = client.ObjectKey{Namespace: cpNamespace, Name: cpName}

func getMesh(g Gomega) *meshv1.Mesh {
	var m meshv1.Mesh
	g.Expect(k8sClient.Get(context.Background(), client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
	return &m
}

// haveCondition matches a Mesh whose condition t has the status and reason, at its generation.
func expectCondition(g Gomega, m *meshv1.Mesh, t string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	c := meta.FindStatusCondition(m.Status.Conditions, t)
	g.Expect(c).NotTo(BeNil(), "no %s condition", t)
	g.Expect(c.ObservedGeneration).To(Equal(m.Generation), "%s is stale", t)
	g.Expect(c.Status).To(Equal(status), "%s: %s (%s)", t, c.Message, c.Reason)
	if reason != "" {
		g.Expect(c.Reason).To(Equal(reason), "%s: %s", t, c.Message)
	}
	return c
}

// markAvailable stands in for kube-controller-manager and kubelet, which envtest does not run:
// it reports the control-plane Deployment's pods as available and ready behind its Service.
// Nothing serves there: a spec that creates pods the webhook selects starts a stand-in
// (controlPlanes.start) instead.
func markAvailable(ctx context.Context, key client.ObjectKey) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(updateDeploymentStatus(ctx, key)).To(Succeed())
		var dep appsv1.Deployment
		g.Expect(k8sClient.Get(ctx, key, &dep)).To(Succeed())
		g.Expect(ensureEndpoint(ctx, key, dep.Labels[meshv1.LabelRevision])).To(Succeed())
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

func certReady(g Gomega, key client.ObjectKey) {
	certificateReady(context.Background(), key)(g)
}

func sha256Fingerprint(pemData []byte) string {
	block, _ := pem.Decode(pemData)
	Expect(block).NotTo(BeNil())
	cert, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	sum := sha256.Sum256(cert.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

var _ = Describe("The Mesh reconciler", Ordered, func() {
	ctx := context.Background()
	BeforeAll(func() {
		deleteMesh(ctx)
		Expect(k8sClient.Create(ctx, sampleMesh())).To(Succeed())
	})
	AfterAll(func() { deleteMesh(ctx) })

	It("bootstraps the trust chain through cert-manager: CertificatesReady, root in status", func() {
		Eventually(func(g Gomega) {
			certReady(g, client.ObjectKey{Namespace: cpNamespace, Name: "knit-root-ca"})
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionDependenciesHealthy, metav1.ConditionTrue, meshv1.ReasonAsExpected)
			expectCondition(g, m, meshv1.ConditionCertificatesReady, metav1.ConditionTrue, meshv1.ReasonAsExpected)
			expectCondition(g, m, meshv1.ConditionCertificatesHealthy, metav1.ConditionTrue, meshv1.ReasonAsExpected)
			g.Expect(m.Status.Trust).NotTo(BeNil())
		}).WithTimeout(90 * time.Second).Should(Succeed())

		var issuer cmapi.Issuer
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-ca"}, &issuer)).To(Succeed())
		Expect(issuer.Spec.CA).NotTo(BeNil())
		Expect(issuer.Spec.CA.SecretName).To(Equal("knit-issuing-ca"))

		var secret, issuing corev1.Secret
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-root-ca"}, &secret)).To(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-issuing-ca"}, &issuing)).To(Succeed())
		Expect(issuing.Data["tls.crt"]).To(Equal(secret.Data["tls.crt"]), "nothing signed before: the first root signs at once")
		m := getMesh(Default)
		Expect(m.Status.Trust.RootFingerprint).To(Equal(sha256Fingerprint(secret.Data["tls.crt"])))
		Expect(m.Status.Trust.RootNotAfter.Time).To(BeTemporally(">", time.Now().Add(300*24*time.Hour)))

		var bundle corev1.ConfigMap
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-trust-bundle"}, &bundle)).To(Succeed())
		Expect(bundle.Data["ca.crt"]).To(Equal(string(secret.Data["tls.crt"])))
	})

	It("runs a MeshRevision named after the version, with its whole control plane, owned", func() {
		var rev meshv1.MeshRevision
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: revision}, &rev)).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(rev.Spec.Version).To(Equal("v0.1.0"))
		Expect(metav1.IsControlledBy(&rev, getMesh(Default))).To(BeTrue())

		for _, obj := range []client.Object{
			&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &policyv1.PodDisruptionBudget{}, &cmapi.Certificate{},
		} {
			Eventually(func(g Gomega) {
				g.Expect(k8sClient.Get(ctx, cpKey, obj)).To(Succeed())
				g.Expect(metav1.IsControlledBy(obj, &rev)).To(BeTrue(), "%T not owned by the revision", obj)
			}).WithTimeout(30 * time.Second).Should(Succeed())
		}
		for _, obj := range []client.Object{&rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{}} {
			Eventually(func(g Gomega) {
				g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: cpName}, obj)).To(Succeed())
				g.Expect(metav1.IsControlledBy(obj, &rev)).To(BeTrue(), "%T not owned by the revision", obj)
			}).WithTimeout(30 * time.Second).Should(Succeed())
		}
		var dep appsv1.Deployment
		Expect(k8sClient.Get(ctx, cpKey, &dep)).To(Succeed())
		Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal("knit.local/knit/controlplane:v0.1.0"))
		Expect(*dep.Spec.Replicas).To(BeEquivalentTo(2))
		Eventually(func(g Gomega) { certReady(g, cpKey) }).WithTimeout(60 * time.Second).Should(Succeed())

		By("creating the Deployment once, already carrying the serving certificate: no second rollout after install")
		Expect(k8sClient.Get(ctx, cpKey, &dep)).To(Succeed())
		Expect(dep.Generation).To(BeEquivalentTo(1))
		Expect(dep.Spec.Template.Annotations).To(HaveKey("knit.dev/serving-certificate"))

		By("reporting the control plane unavailable until its pods are")
		Eventually(func(g Gomega) {
			m := getMesh(g)
			c := expectCondition(g, m, meshv1.ConditionAvailable, metav1.ConditionFalse, meshv1.ReasonDeploymentUnavailable)
			g.Expect(c.Message).To(ContainSubstring("Deployment knit-system/knit-controlplane-v0-1-0 has 0 of 2 replicas available"))
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotReady)
		}).WithTimeout(30 * time.Second).Should(Succeed())

		markAvailable(ctx, cpKey)
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionAvailable, metav1.ConditionTrue, "")
			expectCondition(g, m, meshv1.ConditionControlPlaneReady, metav1.ConditionTrue, "")
			expectCondition(g, m, meshv1.ConditionUpgrading, metav1.ConditionFalse, meshv1.ReasonUpToDate)
			expectCondition(g, m, meshv1.ConditionDegraded, metav1.ConditionFalse, "")
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonAllReady)
			g.Expect(m.Status.Version).To(Equal("v0.1.0"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("configures the injection webhook with the serving certificate's CA, and repairs it", func() {
		key := client.ObjectKey{Name: "knit-injector-v0-1-0"}
		var mwc admissionregistrationv1.MutatingWebhookConfiguration
		var secret corev1.Secret
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, &mwc)).To(Succeed())
			g.Expect(k8sClient.Get(ctx, cpKey, &secret)).To(Succeed())
			g.Expect(mwc.Webhooks).To(HaveLen(2))
			for _, w := range mwc.Webhooks {
				g.Expect(w.ClientConfig.CABundle).To(Equal(secret.Data["ca.crt"]), w.Name)
			}
			expectCondition(g, getMesh(g), meshv1.ConditionInjectionReady, metav1.ConditionTrue, "")
		}).WithTimeout(30 * time.Second).Should(Succeed())

		byName := map[string]admissionregistrationv1.MutatingWebhook{}
		for _, w := range mwc.Webhooks {
			byName[w.Name] = w
		}
		rev := byName["rev.inject.knit.dev"]
		Expect(rev.NamespaceSelector.MatchLabels).To(HaveKeyWithValue("knit.dev/rev", revision))
		ns := byName["namespace.inject.knit.dev"]
		Expect(ns.NamespaceSelector.MatchLabels).To(HaveKeyWithValue("knit.dev/inject", "enabled"))
		Expect(ns.NamespaceSelector.MatchExpressions).To(ContainElement(And(
			HaveField("Key", "kubernetes.io/metadata.name"), HaveField("Operator", metav1.LabelSelectorOpNotIn),
			HaveField("Values", ContainElements("kube-system", "kube-public", "kube-node-lease", cpNamespace, operatorNamespace)),
		)))
		Expect(*ns.FailurePolicy).To(Equal(admissionregistrationv1.Fail))
		Expect(*ns.TimeoutSeconds).To(BeNumerically("<=", 10))
		Expect(ns.ClientConfig.Service.Name).To(Equal(cpName))
		Expect(ns.ObjectSelector.MatchExpressions).To(ContainElement(metav1.LabelSelectorRequirement{
			Key: "knit.dev/inject", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"},
		}))

		By("deleting it")
		oldUID := mwc.UID
		Expect(k8sClient.Delete(ctx, &mwc)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, &mwc)).To(Succeed())
			g.Expect(mwc.UID).NotTo(Equal(oldUID))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("restores a deleted child", func() {
		var svc corev1.Service
		Expect(k8sClient.Get(ctx, cpKey, &svc)).To(Succeed())
		oldUID := svc.UID
		Expect(k8sClient.Delete(ctx, &svc)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, cpKey, &svc)).To(Succeed())
			g.Expect(svc.UID).NotTo(Equal(oldUID))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("reverts an edit to a child", func() {
		var dep appsv1.Deployment
		Expect(k8sClient.Get(ctx, cpKey, &dep)).To(Succeed())
		patch := client.MergeFrom(dep.DeepCopy())
		dep.Spec.Replicas = ptr.To[int32](7)
		dep.Spec.Template.Spec.Containers[0].Image = "example.invalid/not-knit:latest"
		Expect(k8sClient.Patch(ctx, &dep, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, cpKey, &dep)).To(Succeed())
			g.Expect(*dep.Spec.Replicas).To(BeEquivalentTo(2))
			g.Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal("knit.local/knit/controlplane:v0.1.0"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		markAvailable(ctx, cpKey)
	})

	It("distributes the trust bundle to namespaces that join the mesh and removes it when they leave", func() {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{meshv1.LabelInject: "enabled"}}}
		Expect(k8sClient.Create(ctx, ns)).To(Succeed())
		key := client.ObjectKey{Namespace: "shop", Name: "knit-trust-bundle"}
		var cm, source corev1.ConfigMap
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, key, &cm)).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-trust-bundle"}, &source)).To(Succeed())
		Expect(cm.Data["ca.crt"]).To(Equal(source.Data["ca.crt"]))

		patch := client.MergeFrom(ns.DeepCopy())
		delete(ns.Labels, meshv1.LabelInject)
		Expect(k8sClient.Patch(ctx, ns, patch)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, key, &cm))
		}).WithTimeout(30 * time.Second).Should(BeTrue())
	})

	It("refuses an unsupported or end-of-life version in status, naming the supported ones, and keeps running", func() {
		// Within one minor release of the running v0.1.0: the API server itself refuses a version
		// further away (mesh_validation_test.go).
		for version, want := range map[string]string{
			"v0.2.9": "mesh version v0.2.9 is not a release this operator knows; supported versions: v0.1.0, v0.2.0",
			"v0.0.9": "mesh version v0.0.9 is end of life; supported versions: v0.1.0, v0.2.0",
		} {
			m := getMesh(Default)
			patch := client.MergeFrom(m.DeepCopy())
			m.Spec.Version = version
			Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())
			Eventually(func(g Gomega) {
				m := getMesh(g)
				c := expectCondition(g, m, meshv1.ConditionReconciled, metav1.ConditionFalse, meshv1.ReasonUnsupportedVersion)
				g.Expect(c.Message).To(ContainSubstring(want))
				expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotReady)
				// The running revision is untouched.
				expectCondition(g, m, meshv1.ConditionAvailable, metav1.ConditionTrue, "")
				g.Expect(m.Status.Version).To(Equal("v0.1.0"))
			}).WithTimeout(30 * time.Second).Should(Succeed())
			// Back to a good version in between, so each bad one is a change of its own.
			patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Version = "v0.1.0" })
			Eventually(func(g Gomega) {
				expectCondition(g, getMesh(g), meshv1.ConditionReconciled, metav1.ConditionTrue, "")
			}).WithTimeout(30 * time.Second).Should(Succeed())
		}
		m := getMesh(Default)
		patch := client.MergeFrom(m.DeepCopy())
		m.Spec.Version = "v0.1.0"
		Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("telling each change in its own event, with its own message")
		for _, want := range []string{"v0.2.9 is not a release this operator knows", "v0.0.9 is end of life"} {
			Eventually(func(g Gomega) []string {
				var list eventsv1.EventList
				g.Expect(k8sClient.List(ctx, &list, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
				var notes []string
				for _, e := range list.Items {
					if e.Regarding.Kind == "Mesh" && e.Reason == meshv1.ReasonUnsupportedVersion {
						notes = append(notes, e.Note)
					}
				}
				return notes
			}).WithTimeout(30*time.Second).Should(ContainElement(ContainSubstring(want)), "no event says %q", want)
		}
	})

	It("makes no API write when reconciling again with nothing changed", func() {
		counter := &writeCounter{Client: k8sClient}
		r := newMeshReconciler(counter)
		rr := newRevisionReconciler(counter)
		// The manager's reconcilers converge first; then a reconcile finds nothing to do.
		Eventually(func(g Gomega) {
			counter.reset()
			_, err := r.Reconcile(ctx, requestFor(meshv1.MeshName))
			g.Expect(err).NotTo(HaveOccurred())
			_, err = rr.Reconcile(ctx, requestFor(revision))
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(counter.writes()).To(BeEmpty())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		for range 3 {
			counter.reset()
			_, err := r.Reconcile(ctx, requestFor(meshv1.MeshName))
			Expect(err).NotTo(HaveOccurred())
			_, err = rr.Reconcile(ctx, requestFor(revision))
			Expect(err).NotTo(HaveOccurred())
			Expect(counter.writes()).To(BeEmpty())
		}
	})

	It("tells a person when cert-manager's controller has stopped", func() {
		// The suite's cert-manager runs without leader election; this Lease is the one a
		// cert-manager with leader election (as installed in a cluster) renews while it runs.
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "cert-manager-controller"},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To("cert-manager-7d9f-abcde"),
				LeaseDurationSeconds: ptr.To[int32](60),
				RenewTime:            &metav1.MicroTime{Time: time.Now().Add(-10 * time.Minute)},
			},
		}
		Expect(k8sClient.Create(ctx, lease)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, lease))).To(Succeed()) })

		// The operator watches the Lease: a change is seen within seconds, not at the next poll.
		Eventually(func(g Gomega) {
			m := getMesh(g)
			c := expectCondition(g, m, meshv1.ConditionDependenciesHealthy, metav1.ConditionFalse, meshv1.ReasonCertManagerNotRunning)
			g.Expect(c.Message).To(ContainSubstring("cert-manager's controller is not running: its Lease kube-system/cert-manager-controller was last renewed at"))
			ready := expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotReady)
			g.Expect(ready.Message).To(ContainSubstring("DependenciesHealthy=False (CertManagerNotRunning)"))
			expectCondition(g, m, meshv1.ConditionDegraded, metav1.ConditionTrue, "")
		}).WithTimeout(10 * time.Second).Should(Succeed())

		By("renewing the Lease, as cert-manager does when it runs again")
		patch := client.MergeFrom(lease.DeepCopy())
		lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		Expect(k8sClient.Patch(ctx, lease, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionDependenciesHealthy, metav1.ConditionTrue, meshv1.ReasonAsExpected)
		}).WithTimeout(10 * time.Second).Should(Succeed())
	})

	It("uses the issuer a user names, and flips CertificatesHealthy when its root nears expiry", func() {
		By("naming a ClusterIssuer that does not exist")
		m := getMesh(Default)
		patch := client.MergeFrom(m.DeepCopy())
		m.Spec.Trust.IssuerRef = &meshv1.IssuerReference{Name: "corp-ca", Kind: meshv1.IssuerKindClusterIssuer}
		Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			c := expectCondition(g, getMesh(g), meshv1.ConditionCertificatesReady, metav1.ConditionFalse, meshv1.ReasonIssuerNotFound)
			g.Expect(c.Message).To(ContainSubstring("ClusterIssuer corp-ca not found"))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("creating a user CA whose root lives two days")
		Expect(k8sClient.Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "user-selfsigned", Namespace: cpNamespace},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "user-root", Namespace: cpNamespace},
			Spec: cmapi.CertificateSpec{
				IsCA: true, CommonName: "short-lived user root", SecretName: "user-root",
				Duration:   &metav1.Duration{Duration: 48 * time.Hour},
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: "user-selfsigned", Kind: "Issuer", Group: "cert-manager.io"},
			},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "user-ca", Namespace: cpNamespace},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "user-root"}}},
		})).To(Succeed())

		m = getMesh(Default)
		patch = client.MergeFrom(m.DeepCopy())
		m.Spec.Trust.IssuerRef = &meshv1.IssuerReference{Name: "user-ca", Kind: meshv1.IssuerKindIssuer, Group: "cert-manager.io"}
		Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())

		By("saying the operator may not grant approval for that issuer's signer")
		Eventually(func(g Gomega) {
			var rev meshv1.MeshRevision
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: revision}, &rev)).To(Succeed())
			c := meta.FindStatusCondition(rev.Status.Conditions, meshv1.ConditionReconciled)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(meshv1.ReasonSignerNotGranted), c.Message)
			g.Expect(c.Message).To(ContainSubstring("signer issuers.cert-manager.io/knit-system.user-ca"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		grantApproval(ctx, "approve-user-ca", "issuers.cert-manager.io/knit-system.user-ca")

		By("rolling the control plane out with the new issuer")
		Eventually(func(g Gomega) {
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, cpKey, &dep)).To(Succeed())
			g.Expect(dep.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--issuer-name=user-ca"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		markAvailable(ctx, cpKey)

		Eventually(func(g Gomega) {
			// The pods restart with the new serving certificate: the Deployment rolls again.
			g.Expect(updateDeploymentStatus(ctx, cpKey)).To(Succeed())
			m := getMesh(g)
			c := expectCondition(g, m, meshv1.ConditionCertificatesReady, metav1.ConditionTrue, "")
			g.Expect(c.Message).To(ContainSubstring("Issuer knit-system/user-ca is Ready (spec.trust.issuerRef)"))
			var rev meshv1.MeshRevision
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: revision}, &rev)).To(Succeed())
			g.Expect(rev.Spec.IssuerRef.Name).To(Equal("user-ca"))
			// The webhook's caBundle follows the CA that now signs the serving certificate.
			var secret corev1.Secret
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "user-root"}, &secret)).To(Succeed())
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit-injector-v0-1-0"}, &mwc)).To(Succeed())
			g.Expect(mwc.Webhooks[0].ClientConfig.CABundle).To(Equal(secret.Data["tls.crt"]))
			c = expectCondition(g, m, meshv1.ConditionCertificatesHealthy, metav1.ConditionFalse, meshv1.ReasonCertificateExpiring)
			g.Expect(c.Message).To(ContainSubstring(`trust root "short-lived user root"`))
			expectCondition(g, m, meshv1.ConditionDegraded, metav1.ConditionTrue, "")
			// A root that still works is a warning, not an outage.
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(90 * time.Second).Should(Succeed())
	})
})
