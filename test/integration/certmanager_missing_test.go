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
	"os"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/controllers"
	"github.com/knit-mesh/knit/test/testenv"
)

// A cluster without cert-manager needs its own API server: the suite's has cert-manager.
var _ = Describe("The operator on a cluster without cert-manager", Ordered, func() {
	var (
		bare    *testenv.Env
		c       client.Client
		stop    context.CancelFunc
		mgrDone = make(chan error, 1)
	)
	ctx := context.Background()

	BeforeAll(func() {
		var err error
		bare, err = testenv.Start(testenv.Options{Out: os.Stdout})
		Expect(err).NotTo(HaveOccurred())
		c, err = client.New(bare.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		mgr, err := ctrl.NewManager(bare.Config, ctrl.Options{
			Scheme: scheme, Cache: controllers.CacheOptions(),
			Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
			// The suite's manager already registered controllers of these names in this process.
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect((&controllers.MeshReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr)).To(Succeed())
		var mctx context.Context
		mctx, stop = context.WithCancel(context.Background())
		go func() {
			defer GinkgoRecover()
			mgrDone <- mgr.Start(mctx)
		}()
		Expect(c.Create(ctx, sampleMesh())).To(Succeed())
	})
	AfterAll(func() {
		if stop != nil {
			stop()
			Eventually(mgrDone, 30*time.Second).Should(Receive(BeNil()))
		}
		if bare != nil {
			Expect(bare.Stop()).To(Succeed())
		}
	})

	It("reports DependenciesHealthy=False/CertManagerMissing with an install hint, and keeps running", func() {
		Eventually(func(g Gomega) {
			var m meshv1.Mesh
			g.Expect(c.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			cond := expectCondition(g, &m, meshv1.ConditionDependenciesHealthy, metav1.ConditionFalse, meshv1.ReasonCertManagerMissing)
			g.Expect(cond.Message).To(ContainSubstring("CustomResourceDefinition certificates.cert-manager.io"))
			g.Expect(cond.Message).To(ContainSubstring("install cert-manager"))
			expectCondition(g, &m, meshv1.ConditionCertificatesReady, metav1.ConditionFalse, meshv1.ReasonCertManagerMissing)
			ready := expectCondition(g, &m, meshv1.ConditionReady, metav1.ConditionFalse, meshv1.ReasonNotReady)
			g.Expect(ready.Message).To(ContainSubstring("DependenciesHealthy=False (CertManagerMissing)"))
			// Said once, however many conditions it fails.
			g.Expect(strings.Count(ready.Message, "cert-manager is not installed")).To(Equal(1), ready.Message)
			g.Expect(len(ready.Message)).To(BeNumerically("<=", 1024))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Consistently(mgrDone, 2*time.Second).ShouldNot(Receive(), "the manager stopped")
	})

	It("recovers by itself once cert-manager's CRDs are installed", func() {
		Expect(bare.InstallCertManagerCRDs()).To(Succeed())
		Eventually(func(g Gomega) {
			var m meshv1.Mesh
			g.Expect(c.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			expectCondition(g, &m, meshv1.ConditionDependenciesHealthy, metav1.ConditionTrue, meshv1.ReasonAsExpected)
			// The trust chain is created now that cert-manager's kinds exist (no cert-manager
			// controller runs here, so it does not become Ready).
			var issuer cmapi.Issuer
			g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "knit-system", Name: "knit-selfsigned"}, &issuer)).To(Succeed())
			var cert cmapi.Certificate
			g.Expect(c.Get(ctx, client.ObjectKey{Namespace: "knit-system", Name: "knit-controlplane-v0-1-0"}, &cert)).To(Succeed())
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})

	It("keeps InjectionReady while the webhook can answer, even once cert-manager is removed", func() {
		key := client.ObjectKey{Namespace: "knit-system", Name: "knit-controlplane-v0-1-0"}
		// No cert-manager controller runs here: write the serving Secret as it would, and play
		// the Deployment and EndpointSlice controllers.
		crt, tlsKey := selfSignedServingCertificate(key)
		Expect(c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": crt, "tls.key": tlsKey, "ca.crt": crt},
		})).To(Succeed())
		Expect(c.Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name + "-standin", Labels: map[string]string{
				discoveryv1.LabelServiceName: key.Name, meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelRevision: "default-v0-1-0",
			}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("webhook"), Port: ptr.To[int32](8443)}},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			var dep appsv1.Deployment
			g.Expect(c.Get(ctx, key, &dep)).To(Succeed())
			n := ptr.Deref(dep.Spec.Replicas, 1)
			dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: n, ReadyReplicas: n, AvailableReplicas: n, UpdatedReplicas: n,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}}
			g.Expect(c.Status().Update(ctx, &dep)).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		meshCond := func(g Gomega, t string) metav1.Condition {
			var m meshv1.Mesh
			g.Expect(c.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &m)).To(Succeed())
			cond := meta.FindStatusCondition(m.Status.Conditions, t)
			g.Expect(cond).NotTo(BeNil())
			return *cond
		}
		Eventually(func(g Gomega) {
			g.Expect(meshCond(g, meshv1.ConditionInjectionReady).Status).To(Equal(metav1.ConditionTrue), meshCond(g, meshv1.ConditionInjectionReady).Message)
		}).WithTimeout(30 * time.Second).Should(Succeed())

		By("removing cert-manager's CRDs")
		for _, name := range []string{"certificates.cert-manager.io", "certificaterequests.cert-manager.io", "issuers.cert-manager.io", "clusterissuers.cert-manager.io"} {
			Expect(client.IgnoreNotFound(c.Delete(ctx, &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
		}
		Eventually(func(g Gomega) {
			var rev meshv1.MeshRevision
			g.Expect(c.Get(ctx, client.ObjectKey{Name: "default-v0-1-0"}, &rev)).To(Succeed())
			certs := meta.FindStatusCondition(rev.Status.Conditions, meshv1.ConditionCertificatesReady)
			g.Expect(certs).NotTo(BeNil())
			g.Expect(certs.Reason).To(Equal(meshv1.ReasonCertManagerMissing))
			inj := meta.FindStatusCondition(rev.Status.Conditions, meshv1.ConditionInjectionReady)
			g.Expect(inj.Status).To(Equal(metav1.ConditionTrue), "pods are still injected: %s", inj.Message)
			g.Expect(meshCond(g, meshv1.ConditionDependenciesHealthy).Reason).To(Equal(meshv1.ReasonCertManagerMissing))
			g.Expect(meshCond(g, meshv1.ConditionInjectionReady).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
})

// selfSignedServingCertificate is a serving certificate for a Service, as cert-manager would
// issue it, for an environment where cert-manager's controller does not run.
func selfSignedServingCertificate(svc client.ObjectKey) (certPEM, keyPEM []byte) {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	name := svc.Name + "." + svc.Namespace + ".svc"
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	keyDER, err := x509.MarshalECPrivateKey(key)
	Expect(err).NotTo(HaveOccurred())
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
