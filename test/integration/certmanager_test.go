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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// certificateReady reports whether cert-manager marked the Certificate Ready.
func certificateReady(ctx context.Context, key client.ObjectKey) func(Gomega) {
	return func(g Gomega) {
		var c cmapi.Certificate
		g.Expect(k8sClient.Get(ctx, key, &c)).To(Succeed())
		var ready *cmapi.CertificateCondition
		for i := range c.Status.Conditions {
			if c.Status.Conditions[i].Type == cmapi.CertificateConditionReady {
				ready = &c.Status.Conditions[i]
			}
		}
		g.Expect(ready).NotTo(BeNil(), "no Ready condition yet")
		g.Expect(ready.Status).To(Equal(cmmeta.ConditionTrue), "Ready: %s", ready.Message)
	}
}

// readLeaf returns the first certificate of a cert-manager TLS Secret.
func readLeaf(ctx context.Context, key client.ObjectKey) *x509.Certificate {
	GinkgoHelper()
	var s corev1.Secret
	Expect(k8sClient.Get(ctx, key, &s)).To(Succeed())
	block, _ := pem.Decode(s.Data[corev1.TLSCertKey])
	Expect(block).NotTo(BeNil(), "no PEM in %s", key)
	cert, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return cert
}

// This spec proves the testbed is real: the cert-manager controller running as a process issues
// a CA from a self-signed issuer, then signs a workload certificate with it, and approves and
// signs a CertificateRequest made from a bare CSR (the flow of a mesh's own CA client).
var _ = Describe("The cert-manager controller in the testbed", Ordered, func() {
	ctx := context.Background()
	ns := "cert-manager-proof"

	BeforeAll(func() {
		Expect(env.CertManagerRunning()).To(BeTrue(), "cert-manager process is not running; see %s", env.LogDir)
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	})

	It("signs a CA certificate from a self-signed Issuer", func() {
		// cert-manager's webhook is not running here, so nothing is defaulted: set every field.
		Expect(k8sClient.Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "selfsigned", Namespace: ns},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns},
			Spec: cmapi.CertificateSpec{
				IsCA:       true,
				CommonName: "knit test root",
				SecretName: "root-ca",
				Duration:   &metav1.Duration{Duration: 48 * time.Hour},
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				IssuerRef:  cmmeta.IssuerReference{Name: "selfsigned", Kind: "Issuer", Group: "cert-manager.io"},
			},
		})).To(Succeed())
		Eventually(certificateReady(ctx, client.ObjectKey{Namespace: ns, Name: "root"})).
			WithTimeout(90 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		root := readLeaf(ctx, client.ObjectKey{Namespace: ns, Name: "root-ca"})
		Expect(root.IsCA).To(BeTrue())
		Expect(root.Subject.CommonName).To(Equal("knit test root"))
	})

	It("signs a workload certificate carrying a SPIFFE identity with that CA", func() {
		Expect(k8sClient.Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "ca", Namespace: ns},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "root-ca"}}},
		})).To(Succeed())
		const spiffe = "spiffe://cluster.local/ns/mesh/sa/workload"
		Expect(k8sClient.Create(ctx, &cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Name: "workload", Namespace: ns},
			Spec: cmapi.CertificateSpec{
				SecretName: "workload-tls",
				URIs:       []string{spiffe},
				Duration:   &metav1.Duration{Duration: 2 * time.Hour},
				PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
				Usages:     []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth, cmapi.UsageClientAuth},
				IssuerRef:  cmmeta.IssuerReference{Name: "ca", Kind: "Issuer", Group: "cert-manager.io"},
			},
		})).To(Succeed())
		Eventually(certificateReady(ctx, client.ObjectKey{Namespace: ns, Name: "workload"})).
			WithTimeout(90 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		leaf := readLeaf(ctx, client.ObjectKey{Namespace: ns, Name: "workload-tls"})
		root := readLeaf(ctx, client.ObjectKey{Namespace: ns, Name: "root-ca"})
		Expect(leaf.URIs).To(HaveLen(1))
		Expect(leaf.URIs[0].String()).To(Equal(spiffe))
		Expect(leaf.Issuer.CommonName).To(Equal("knit test root"))
		Expect(leaf.CheckSignatureFrom(root)).To(Succeed(), "the leaf is signed by the root cert-manager issued")
	})

	It("approves a CertificateRequest made from a CSR and signs the CSR's key with that CA", func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		const spiffe = "spiffe://cluster.local/ns/mesh/sa/proxy"
		id, err := url.Parse(spiffe)
		Expect(err).NotTo(HaveOccurred())
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(ctx, &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "proxy-csr", Namespace: ns},
			Spec: cmapi.CertificateRequestSpec{
				Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
				Duration:  &metav1.Duration{Duration: time.Hour},
				Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth, cmapi.UsageClientAuth},
				IssuerRef: cmmeta.IssuerReference{Name: "ca", Kind: "Issuer", Group: "cert-manager.io"},
			},
		})).To(Succeed())

		// Nobody but cert-manager's own approver (certificaterequests-approver) approves here.
		var cr cmapi.CertificateRequest
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "proxy-csr"}, &cr)).To(Succeed())
			g.Expect(cr.Status.Conditions).To(ContainElement(And(
				HaveField("Type", cmapi.CertificateRequestConditionApproved), HaveField("Status", cmmeta.ConditionTrue))))
			g.Expect(cr.Status.Certificate).NotTo(BeEmpty())
		}).WithTimeout(90 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		block, _ := pem.Decode(cr.Status.Certificate)
		Expect(block).NotTo(BeNil())
		signed, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		Expect(signed.PublicKey).To(Equal(key.Public()), "the certificate carries the CSR's key")
		Expect(signed.URIs).To(HaveLen(1))
		Expect(signed.URIs[0].String()).To(Equal(spiffe))
		Expect(signed.CheckSignatureFrom(readLeaf(ctx, client.ObjectKey{Namespace: ns, Name: "root-ca"}))).To(Succeed())
	})
})
