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
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// podLoop creates pods in a meshed namespace until stopped, and records every pod the API
// server refused or admitted without a proxy.
type podLoop struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	created  int
	failures []string
}

func startPodLoop(ctx context.Context, ns string) *podLoop {
	l := &podLoop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			rev, err := createPod(ctx, ns)
			l.mu.Lock()
			switch {
			case err != nil:
				l.failures = append(l.failures, err.Error())
			case rev == "":
				l.failures = append(l.failures, "a pod was admitted without a proxy")
			default:
				l.created++
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// finish stops the loop and returns how many pods were injected and what failed.
func (l *podLoop) finish() (int, []string) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.created, l.failures
}

func (l *podLoop) failed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.failures) > 0
}

func (l *podLoop) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.created
}

// renew asks cert-manager to issue a Certificate again now, as `cmctl renew` does.
func renew(ctx context.Context, key client.ObjectKey) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var cert cmapi.Certificate
		g.Expect(k8sClient.Get(ctx, key, &cert)).To(Succeed())
		cert.Status.Conditions = append(cert.Status.Conditions, cmapi.CertificateCondition{
			Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue,
			Reason: "ManuallyTriggered", Message: "renewal asked by the test", LastTransitionTime: ptrNow(),
		})
		g.Expect(k8sClient.Status().Update(ctx, &cert)).To(Succeed())
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func ptrNow() *metav1.Time { t := metav1.Now(); return &t }

func secretData(ctx context.Context, key client.ObjectKey, field string) func(Gomega) []byte {
	return func(g Gomega) []byte {
		var s corev1.Secret
		g.Expect(k8sClient.Get(ctx, key, &s)).To(Succeed())
		return s.Data[field]
	}
}

func injectorCABundle(g Gomega, ctx context.Context) []byte {
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: "knit-injector-v0-1-0"}, &mwc)).To(Succeed())
	g.Expect(mwc.Webhooks).NotTo(BeEmpty())
	return mwc.Webhooks[0].ClientConfig.CABundle
}

var _ = Describe("Certificate changes while pods are created", Ordered, func() {
	const ns = "cert-shop"
	ctx := context.Background()

	BeforeAll(func() {
		deleteMesh(ctx)
		Expect(k8sClient.Create(ctx, meshSelecting())).To(Succeed())
		DeferCleanup(func() { deleteMesh(ctx) })
		DeferCleanup(standins.stopAll) // before the Mesh goes (cleanups run last-in first-out)
		standins.start(ctx, revision)
		ensureNamespace(ctx, ns, selectedLabel)
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionReady, metav1.ConditionTrue, meshv1.ReasonAllReady)
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})

	// expectNoRefusalWhile runs change with pods being created throughout, until the webhook
	// trusts only the serving certificate's new CA, and then for a few more pods.
	expectNoRefusalWhile := func(change func(), newCA func(Gomega) []byte) {
		GinkgoHelper()
		loop := startPodLoop(ctx, ns)
		change()
		Eventually(func(g Gomega) {
			ca := newCA(g)
			g.Expect(ca).NotTo(BeEmpty())
			g.Expect(secretData(ctx, cpKey, "ca.crt")(g)).To(Equal(ca), "the serving certificate is not signed by the new CA yet")
			g.Expect(injectorCABundle(g, ctx)).To(Equal(ca), "the webhook still trusts an earlier root")
		}).WithTimeout(120 * time.Second).Should(Succeed())
		after := loop.count()
		Eventually(func() bool { return loop.count() >= after+5 || loop.failed() }).WithTimeout(30 * time.Second).Should(BeTrue())
		created, failures := loop.finish()
		Expect(failures).To(BeEmpty(), "pod creation failed during the change (%d pods injected)", created)
		fmt.Fprintf(GinkgoWriter, "%d pods created and injected during the change\n", created)
	}

	It("switches spec.trust.issuerRef without refusing a pod", func() {
		Expect(k8sClient.Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "switch-selfsigned", Namespace: cpNamespace},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		})).To(Succeed())
		root := &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "switch-root", Namespace: cpNamespace},
			Spec: cmapi.CertificateSpec{
				IsCA: true, CommonName: "switched-to root", SecretName: "switch-root",
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: "switch-selfsigned", Kind: "Issuer", Group: "cert-manager.io"},
			},
		}
		Expect(k8sClient.Create(ctx, root)).To(Succeed())
		Expect(k8sClient.Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "switch-ca", Namespace: cpNamespace},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "switch-root"}}},
		})).To(Succeed())
		DeferCleanup(func() {
			for _, o := range []client.Object{
				&cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "switch-selfsigned", Namespace: cpNamespace}},
				&cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "switch-ca", Namespace: cpNamespace}},
				root,
				&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "switch-root", Namespace: cpNamespace}},
			} {
				Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, o))).To(Succeed())
			}
		})
		Eventually(func(g Gomega) { certReady(g, client.ObjectKeyFromObject(root)) }).WithTimeout(60 * time.Second).Should(Succeed())
		grantApproval(ctx, "approve-switch-ca", "issuers.cert-manager.io/"+cpNamespace+".switch-ca")

		expectNoRefusalWhile(func() {
			patchMesh(ctx, func(m *meshv1.Mesh) {
				m.Spec.Trust.IssuerRef = &meshv1.IssuerReference{Name: "switch-ca", Kind: meshv1.IssuerKindIssuer, Group: "cert-manager.io"}
			})
		}, secretData(ctx, client.ObjectKeyFromObject(root), "tls.crt"))

		By("switching back to the bootstrapped CA")
		expectNoRefusalWhile(func() {
			patchMesh(ctx, func(m *meshv1.Mesh) { m.Spec.Trust.IssuerRef = nil })
		}, secretData(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-root-ca"}, "tls.crt"))
	})

	It("keeps signing with the old root until the re-issued one has been in every trust bundle for the hold", func() {
		rootKey := client.ObjectKey{Namespace: cpNamespace, Name: "knit-root-ca"}
		oldRoot := parsePEMCert(string(secretData(ctx, rootKey, "tls.crt")(Default)))
		Eventually(func(g Gomega) {
			g.Expect(getMesh(g).Status.Trust.RootFingerprint).To(Equal(fingerprint(oldRoot)))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		renewed := time.Now()
		renew(ctx, rootKey)
		var newRoot *x509.Certificate
		Eventually(func(g Gomega) {
			newRoot = parsePEMCert(string(secretData(ctx, rootKey, "tls.crt")(g)))
			g.Expect(newRoot.Equal(oldRoot)).To(BeFalse())
		}).WithTimeout(60 * time.Second).Should(Succeed())
		rotated := time.Now()

		By("trusting both roots in every bundle while certificates still chain to the old root")
		Eventually(func(g Gomega) {
			for _, bundleNS := range []string{cpNamespace, ns} {
				g.Expect(bundleFingerprints(g, ctx, bundleNS)).To(ContainElements(fingerprint(oldRoot), fingerprint(newRoot)), "bundle of %s", bundleNS)
			}
		}).WithTimeout(30 * time.Second).Should(Succeed())
		leaf := signThroughKnitCA(ctx)
		Expect(time.Since(rotated)).To(BeNumerically("<", rootRotationHold),
			"signing took longer than the hold: the spec proves nothing (raise rootRotationHold)")
		expectChainsTo(leaf, oldRoot, newRoot)
		// The status follows the bundles' writes in the same reconcile, a moment later.
		Eventually(func(g Gomega) {
			m := getMesh(g)
			g.Expect(m.Status.Trust.RootFingerprint).To(Equal(fingerprint(oldRoot)), "status names the root that signs")
			c := expectCondition(g, m, meshv1.ConditionCertificatesHealthy, metav1.ConditionTrue, meshv1.ReasonRootRotating)
			g.Expect(c.Message).To(ContainSubstring(fingerprint(newRoot)))
			g.Expect(c.Message).To(ContainSubstring("knit-issuing-ca"))
		}).WithTimeout(10 * time.Second).Should(Succeed())

		By("moving signing to the new root once the hold is over")
		Eventually(func(g Gomega) {
			m := getMesh(g)
			g.Expect(m.Status.Trust.RootFingerprint).To(Equal(fingerprint(newRoot)))
			expectCondition(g, m, meshv1.ConditionCertificatesHealthy, metav1.ConditionTrue, meshv1.ReasonAsExpected)
		}).WithTimeout(rootRotationHold + 30*time.Second).Should(Succeed())
		Expect(time.Since(renewed)).To(BeNumerically(">=", rootRotationHold), "signing moved before the hold was over")
		expectChainsTo(signThroughKnitCA(ctx), newRoot, oldRoot)
		for _, bundleNS := range []string{cpNamespace, ns} {
			Expect(bundleFingerprints(Default, ctx, bundleNS)).To(ContainElements(fingerprint(oldRoot), fingerprint(newRoot)),
				"the old root stays trusted until it expires: certificates it signed are still in use")
		}
		Eventually(func(g Gomega) []string {
			var list eventsv1.EventList
			g.Expect(k8sClient.List(ctx, &list, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
			var notes []string
			for _, e := range list.Items {
				if e.Regarding.Kind == "Mesh" && e.Reason == meshv1.ReasonSigningRootMoved {
					notes = append(notes, e.Note)
				}
			}
			return notes
		}).WithTimeout(30 * time.Second).Should(ContainElement(ContainSubstring(fingerprint(newRoot))))
	})

	It("rotates the bootstrapped root CA without refusing a pod", func() {
		rootKey := client.ObjectKey{Namespace: cpNamespace, Name: "knit-root-ca"}
		oldRoot := secretData(ctx, rootKey, "tls.crt")(Default)
		expectNoRefusalWhile(func() {
			renew(ctx, rootKey)
			var newRoot []byte
			Eventually(func(g Gomega) []byte { newRoot = secretData(ctx, rootKey, "tls.crt")(g); return newRoot }).
				WithTimeout(60 * time.Second).ShouldNot(Equal(oldRoot))
			// The serving certificate moves to the new root at its first issuance after the
			// CA Issuer signs with it, once the hold is over.
			Eventually(func(g Gomega) {
				g.Expect(getMesh(g).Status.Trust.RootFingerprint).To(Equal(sha256Fingerprint(newRoot)))
			}).WithTimeout(rootRotationHold + 30*time.Second).Should(Succeed())
			renew(ctx, cpKey)
		}, func(g Gomega) []byte {
			root := secretData(ctx, rootKey, "tls.crt")(g)
			g.Expect(bytes.Equal(root, oldRoot)).To(BeFalse())
			return root
		})
	})
})

// signThroughKnitCA has the bootstrapped CA Issuer sign a workload-style CertificateRequest, as
// the identity service does, approves it as knit would, and returns the certificate.
func signThroughKnitCA(ctx context.Context) *x509.Certificate {
	GinkgoHelper()
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "rotation-probe-", Namespace: cpNamespace},
		Spec: cmapi.CertificateRequestSpec{
			Request:   []byte(workloadCSR(newP256(), "spiffe://cluster.local/ns/cert-shop/sa/probe")),
			IssuerRef: cmmeta.IssuerReference{Name: "knit-ca", Kind: "Issuer", Group: "cert-manager.io"},
			Duration:  &metav1.Duration{Duration: time.Hour},
			Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth, cmapi.UsageClientAuth},
		},
	}
	Expect(k8sClient.Create(ctx, cr)).To(Succeed())
	DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, cr))).To(Succeed()) })
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), cr)).To(Succeed())
		apiutil.SetCertificateRequestCondition(cr, cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue,
			"knit.dev", "approved by the rotation spec")
		g.Expect(k8sClient.Status().Update(ctx, cr)).To(Succeed())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	Eventually(func(g Gomega) []byte {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(cr), cr)).To(Succeed())
		return cr.Status.Certificate
	}).WithTimeout(30 * time.Second).ShouldNot(BeEmpty())
	return parsePEMCert(string(cr.Status.Certificate))
}

// expectChainsTo checks leaf verifies against root and not against other.
func expectChainsTo(leaf, root, other *x509.Certificate) {
	GinkgoHelper()
	verify := func(anchor *x509.Certificate) error {
		pool := x509.NewCertPool()
		pool.AddCert(anchor)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	Expect(verify(root)).To(Succeed(), "the certificate does not chain to root %s", fingerprint(root))
	Expect(verify(other)).NotTo(Succeed(), "the certificate chains to root %s", fingerprint(other))
}

// bundleFingerprints lists the roots in a namespace's trust bundle.
func bundleFingerprints(g Gomega, ctx context.Context, ns string) []string {
	var cm corev1.ConfigMap
	g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "knit-trust-bundle"}, &cm)).To(Succeed())
	var out []string
	rest := []byte(cm.Data["ca.crt"])
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		g.Expect(err).NotTo(HaveOccurred())
		out = append(out, fingerprint(c))
	}
}

func fingerprint(c *x509.Certificate) string {
	return sha256Fingerprint(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}
