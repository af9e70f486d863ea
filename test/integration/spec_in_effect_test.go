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
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// intermediateOnly returns a CA certificate and key signed by a root that is thrown away: an
// issuer backed by it cannot tell anyone which root to trust.
func intermediateOnly() (certPEM, keyPEM []byte) {
	GinkgoHelper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	root := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "offline root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	inter := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "issuing intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(180 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, inter, root, &key.PublicKey, rootKey)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

var _ = Describe("What the Mesh claims", Ordered, func() {
	ctx := context.Background()
	BeforeAll(func() {
		deleteMesh(ctx)
		Expect(k8sClient.Create(ctx, sampleMesh())).To(Succeed())
		Eventually(func(g Gomega) { certReady(g, cpKey) }).WithTimeout(90 * time.Second).Should(Succeed())
		markAvailable(ctx, cpKey)
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})
	AfterAll(func() { deleteMesh(ctx) })

	It("puts observability settings in effect through the control plane that injects, and stays Ready", func() {
		controlPlaneArgs := func(g Gomega) []string {
			var dep appsv1.Deployment
			g.Expect(k8sClient.Get(ctx, cpKey, &dep)).To(Succeed())
			return dep.Spec.Template.Spec.Containers[0].Args
		}
		m := getMesh(Default)
		patch := client.MergeFrom(m.DeepCopy())
		m.Spec.Observability.Tracing = &meshv1.TracingSpec{Endpoint: "otel-collector.observability:4317", SamplingPercent: 5}
		m.Spec.Observability.Metrics.Enabled = ptr.To(false)
		Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(controlPlaneArgs(g)).To(ContainElements("--tracing-endpoint=otel-collector.observability:4317",
				"--tracing-sampling-percent=5", "--no-proxy-metrics"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		markAvailable(ctx, cpKey)
		Eventually(func(g Gomega) {
			m := getMesh(g)
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionTrue, "")
			g.Expect(meta.FindStatusCondition(m.Status.Conditions, "SpecSupported")).To(BeNil(),
				"every spec field is in effect: no condition says otherwise")
		}).WithTimeout(30 * time.Second).Should(Succeed())

		m = getMesh(Default)
		patch = client.MergeFrom(m.DeepCopy())
		m.Spec.Observability.Tracing = nil
		m.Spec.Observability.Metrics.Enabled = nil
		Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			for _, a := range controlPlaneArgs(g) {
				g.Expect(a).NotTo(Or(HavePrefix("--tracing-"), Equal("--no-proxy-metrics")))
			}
		}).WithTimeout(30 * time.Second).Should(Succeed())
		markAvailable(ctx, cpKey)
		Eventually(func(g Gomega) {
			expectCondition(g, getMesh(g), meshv1.ConditionReady, metav1.ConditionTrue, "")
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("distributes no trust bundle from an issuer that does not publish its root CA, and says so", func() {
		var before corev1.ConfigMap
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-trust-bundle"}, &before)).To(Succeed())

		certPEM, keyPEM := intermediateOnly()
		Expect(k8sClient.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "intermediate-only", Namespace: cpNamespace},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "intermediate-ca", Namespace: cpNamespace},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "intermediate-only"}}},
		})).To(Succeed())
		grantApproval(ctx, "approve-intermediate-ca", "issuers.cert-manager.io/"+cpNamespace+".intermediate-ca")

		m := getMesh(Default)
		patch := client.MergeFrom(m.DeepCopy())
		m.Spec.Trust.IssuerRef = &meshv1.IssuerReference{Name: "intermediate-ca", Kind: meshv1.IssuerKindIssuer, Group: "cert-manager.io"}
		Expect(k8sClient.Patch(ctx, m, patch)).To(Succeed())

		Eventually(func(g Gomega) {
			m := getMesh(g)
			for _, t := range []string{meshv1.ConditionCertificatesReady, meshv1.ConditionCertificatesHealthy} {
				c := expectCondition(g, m, t, metav1.ConditionFalse, meshv1.ReasonIssuerPublishesNoCA)
				g.Expect(c.Message).To(ContainSubstring("Secret knit-system/knit-controlplane-v0-1-0"))
				g.Expect(c.Message).To(ContainSubstring("the issuer does not publish the root CA that proxies must trust"))
			}
			expectCondition(g, m, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotReady)
		}).WithTimeout(90 * time.Second).Should(Succeed())

		By("leaving the bundle proxies already trust as it was: never the intermediate or a leaf")
		var after corev1.ConfigMap
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: cpNamespace, Name: "knit-trust-bundle"}, &after)).To(Succeed())
		Expect(after.Data).To(Equal(before.Data))
	})
})
