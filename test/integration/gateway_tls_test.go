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
	"crypto/tls"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/controlplane/xds"
	knitgateway "github.com/knit-mesh/knit/internal/gateway"
)

// HTTPS listeners: the control plane (an xDS server on the real API server, with its real
// informers) judges the certificateRefs from Secrets and ReferenceGrants; the operator's gateway
// reconciler writes what it judged into the Gateway's listener status.
var _ = Describe("HTTPS listeners of Gateways of class knit", Ordered, Label("gateway", "gateway-tls"), func() {
	const ns, certs = "gwtls-apps", "gwtls-certs"
	var ctx context.Context

	BeforeAll(func() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(func() { cancel() })
		for _, n := range []string{ns, certs} {
			Expect(client.IgnoreAlreadyExists(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}))).To(Succeed())
		}
		clientset, err := kubernetes.NewForConfig(env.Config)
		Expect(err).NotTo(HaveOccurred())
		scheme, err := xds.Scheme()
		Expect(err).NotTo(HaveOccurred())
		xdsClient, err := client.New(env.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		cert, _ := selfSignedServing("knit-controlplane-test.knit-system.svc")
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		informers, err := xds.NewCache(env.Config)
		Expect(err).NotTo(HaveOccurred())
		go func() { _ = informers.Start(ctx) }()
		srv, err := xds.New(xds.Options{
			Listener:      lis,
			TLS:           &tls.Config{Certificates: []tls.Certificate{cert}},
			Authenticator: xds.TokenReviewer{Client: clientset},
			Reader:        informers,
			Informers:     informers,
			StatusWriter:  xdsClient,
			TrustDomain:   "cluster.local",
			Debounce:      50 * time.Millisecond,
			Log:           GinkgoLogr.WithName("xds"),
		})
		Expect(err).NotTo(HaveOccurred())
		done := make(chan error, 1)
		go func() { done <- srv.Start(ctx) }()
		DeferCleanup(func() { cancel(); Eventually(done, 30*time.Second).Should(Receive(BeNil())) })
	})
	AfterAll(func() {
		Expect(k8sClient.DeleteAllOf(context.Background(), &gatewayv1.Gateway{}, client.InNamespace(ns))).To(Succeed())
		Expect(k8sClient.DeleteAllOf(context.Background(), &gatewayv1.ReferenceGrant{}, client.InNamespace(certs))).To(Succeed())
	})

	https := func(name string, port int32, secretNamespace, secret string) gatewayv1.Listener {
		ref := gatewayv1.SecretObjectReference{Name: gatewayv1.ObjectName(secret)}
		if secretNamespace != "" {
			ref.Namespace = ptr.To(gatewayv1.Namespace(secretNamespace))
		}
		return gatewayv1.Listener{Name: gatewayv1.SectionName(name), Port: gatewayv1.PortNumber(port), Protocol: gatewayv1.HTTPSProtocolType,
			TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{ref}}}
	}
	tlsSecret := func(namespace, name string) *corev1.Secret {
		crt, key := selfSignedServingCertificate(client.ObjectKey{Namespace: namespace, Name: name})
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
	}
	// expectListener waits for listener name's ResolvedRefs and Programmed conditions.
	expectListener := func(key client.ObjectKey, name string, resolved metav1.ConditionStatus, reason gatewayv1.ListenerConditionReason, programmed metav1.ConditionStatus) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			l := listenerStatus(g, key, name)
			c := listenerCondition(l, gatewayv1.ListenerConditionResolvedRefs)
			g.Expect(c.Status).To(Equal(resolved), "ResolvedRefs of %s: %+v", name, c)
			g.Expect(c.Reason).To(BeEquivalentTo(reason))
			g.Expect(listenerCondition(l, gatewayv1.ListenerConditionProgrammed).Status).To(Equal(programmed))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	}

	It("shows InvalidCertificateRef for a listener whose Secret is missing, keeps the other listeners, and resolves once the Secret exists", func() {
		gw := newGateway(ns, "missing-secret", httpListener("http", 8080), https("https", 8443, "", "site-cert"))
		Expect(k8sClient.Create(ctx, gw)).To(Succeed())
		key := client.ObjectKeyFromObject(gw)
		expectListener(key, "https", metav1.ConditionFalse, gatewayv1.ListenerReasonInvalidCertificateRef, metav1.ConditionFalse)
		Eventually(func(g Gomega) {
			c := listenerCondition(listenerStatus(g, key, "http"), gatewayv1.ListenerConditionResolvedRefs)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "the HTTP listener is not affected")
			g.Expect(listenerCondition(listenerStatus(g, key, "https"), gatewayv1.ListenerConditionResolvedRefs).Message).To(ContainSubstring(ns + "/site-cert"))
		}).Should(Succeed())

		// The Secret appears: the control plane sees it (a referenced Secret's event) and says so.
		Expect(k8sClient.Create(ctx, tlsSecret(ns, "site-cert"))).To(Succeed())
		expectListener(key, "https", metav1.ConditionTrue, gatewayv1.ListenerReasonResolvedRefs, metav1.ConditionFalse /* no mesh: no proxy runs */)
		var got gatewayv1.Gateway
		Expect(k8sClient.Get(ctx, key, &got)).To(Succeed())
		Expect(got.Annotations[knitgateway.AnnotationCertificates]).NotTo(ContainSubstring("PRIVATE"), "the verdict carries no key material")
	})

	It("shows RefNotPermitted for a Secret in another namespace until a ReferenceGrant allows it", func() {
		Expect(k8sClient.Create(ctx, tlsSecret(certs, "shared"))).To(Succeed())
		gw := newGateway(ns, "cross-namespace", https("https", 443, certs, "shared"))
		Expect(k8sClient.Create(ctx, gw)).To(Succeed())
		key := client.ObjectKeyFromObject(gw)
		expectListener(key, "https", metav1.ConditionFalse, gatewayv1.ListenerReasonRefNotPermitted, metav1.ConditionFalse)

		Expect(k8sClient.Create(ctx, &gatewayv1.ReferenceGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: certs, Name: "gateways-of-apps"},
			Spec: gatewayv1.ReferenceGrantSpec{
				From: []gatewayv1.ReferenceGrantFrom{{Group: gatewayv1.GroupName, Kind: "Gateway", Namespace: ns}},
				To:   []gatewayv1.ReferenceGrantTo{{Group: "", Kind: "Secret", Name: ptr.To(gatewayv1.ObjectName("shared"))}},
			},
		})).To(Succeed())
		expectListener(key, "https", metav1.ConditionTrue, gatewayv1.ListenerReasonResolvedRefs, metav1.ConditionFalse)
	})
})
