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
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityapi "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/knit-mesh/knit/controlplane/identity"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// The identity server runs in-process against the real API server (TokenReview, pods) and the
// real cert-manager (CertificateRequests signed by a CA Issuer); proxies are gRPC clients with
// genuine pod-bound tokens from the TokenRequest API.
var _ = Describe("Identity service", Ordered, Label("identity"), func() {
	const (
		caNamespace  = "identity-ca"
		appNamespace = "identity-shop"
		trustDomain  = "mesh.example"
		duration     = 2 * time.Hour
		renewBefore  = 40 * time.Minute
	)
	var (
		ctx       = context.Background()
		conn      *grpc.ClientConn
		registry  *prometheus.Registry
		cartPod   *corev1.Pod
		issuerRef cmmeta.IssuerReference
		// newServer serves another identity server on the same issuer and returns a connection.
		newServer func(approve bool, limits identity.Limits, reg prometheus.Registerer) *grpc.ClientConn
	)

	BeforeAll(func() {
		for _, ns := range []string{caNamespace, appNamespace} {
			Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
		issuerRef = startCAIssuer(ctx, caNamespace)
		for _, sa := range []string{"cart", "other"} {
			Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: appNamespace}})).To(Succeed())
		}
		cartPod = createBoundPod(ctx, appNamespace, "cart-0", "cart")

		// From here on cert-manager signs only what someone approves, as in a cluster running
		// approver-policy: every certificate these specs get was approved by knit itself, and a
		// request knit does not approve is never signed.
		Expect(env.RestartCertManager(false)).To(Succeed())
		DeferCleanup(env.RestartCertManager, true)

		registry = prometheus.NewRegistry()
		limits := identity.DefaultLimits()
		limits.PerPodBurst = 4
		limits.PerPodInterval = time.Hour
		newServer = func(approve bool, limits identity.Limits, reg prometheus.Registerer) *grpc.ClientConn {
			GinkgoHelper()
			srv, err := identity.New(identity.Config{
				TrustDomain: trustDomain, Audience: injection.TokenAudience, Namespace: caNamespace, Issuer: issuerRef,
				Duration: duration, RenewBefore: renewBefore, Approve: approve,
				Client: k8sClient, APIReader: k8sClient,
				TrustBundle: func(ctx context.Context) ([]byte, error) {
					var s corev1.Secret
					err := k8sClient.Get(ctx, client.ObjectKey{Namespace: caNamespace, Name: "identity-root"}, &s)
					return s.Data[corev1.TLSCertKey], err
				},
				Limits: limits, Log: GinkgoLogr,
			}, reg)
			Expect(err).NotTo(HaveOccurred())

			serving, roots := selfSignedServing("knit-controlplane-test.knit-system.svc")
			g := identity.NewGRPCServer(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &serving, nil }, limits)
			srv.Register(g)
			l, err := net.Listen("tcp", "127.0.0.1:0")
			Expect(err).NotTo(HaveOccurred())
			go func() { _ = g.Serve(l) }()
			DeferCleanup(g.Stop)
			conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(conn.Close)
			return conn
		}
		conn = newServer(true, limits, registry)
	})

	callOn := func(conn *grpc.ClientConn, token, csr string) (*securityapi.IstioCertificateResponse, metadata.MD, error) {
		c := securityapi.NewIstioCertificateServiceClient(conn)
		callCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if token != "" {
			callCtx = metadata.AppendToOutgoingContext(callCtx, "authorization", "Bearer "+token)
		}
		var header metadata.MD
		resp, err := c.CreateCertificate(callCtx, &securityapi.IstioCertificateRequest{Csr: csr}, grpc.Header(&header))
		return resp, header, err
	}
	call := func(token, csr string) (*securityapi.IstioCertificateResponse, metadata.MD, error) {
		return callOn(conn, token, csr)
	}
	leftBehind := func() []cmapi.CertificateRequest {
		var list cmapi.CertificateRequestList
		Expect(k8sClient.List(ctx, &list, client.InNamespace(caNamespace), client.MatchingLabels{identity.LabelWorkloadCertificate: "true"})).To(Succeed())
		return list.Items
	}
	refusals := func(reason identity.Reason) float64 {
		families, err := registry.Gather()
		Expect(err).NotTo(HaveOccurred())
		for _, f := range families {
			if f.GetName() != "knit_identity_requests_refused_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == string(reason) {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	expectRefused := func(token, csr string, reason identity.Reason, code codes.Code) {
		GinkgoHelper()
		before := refusals(reason)
		_, _, err := call(token, csr)
		Expect(status.Code(err)).To(Equal(code), "%v", err)
		Expect(status.Convert(err).Message()).To(HavePrefix(string(reason)+": "), "the status names the reason")
		Expect(refusals(reason)).To(Equal(before+1), "the refusal is counted under its reason")
		Expect(leftBehind()).To(BeEmpty(), "no CertificateRequest is left behind")
	}
	cartID := identity.SPIFFEID(trustDomain, appNamespace, "cart")

	It("issues a certificate whose only name is the workload's SPIFFE ID, with the Mesh's lifetime, and removes the CertificateRequest", func() {
		key := newP256()
		resp, header, err := call(podToken(ctx, cartPod, injection.TokenAudience), workloadCSR(key, cartID))
		Expect(err).NotTo(HaveOccurred())
		Expect(len(resp.CertChain)).To(BeNumerically(">=", 2), "leaf, then the trust bundle")
		leaf := parsePEMCert(resp.CertChain[0])
		Expect(leaf.URIs).To(HaveLen(1))
		Expect(leaf.URIs[0].String()).To(Equal(cartID))
		Expect(leaf.DNSNames).To(BeEmpty())
		Expect(leaf.Subject.String()).To(BeEmpty())
		Expect(leaf.NotAfter.Sub(leaf.NotBefore)).To(BeNumerically("~", duration, time.Minute))
		Expect(leaf.ExtKeyUsage).To(ConsistOf(x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth))
		Expect(leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey)).To(BeTrue())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM([]byte(resp.CertChain[len(resp.CertChain)-1]))).To(BeTrue())
		_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		Expect(err).NotTo(HaveOccurred(), "the chain verifies against the returned trust bundle")
		Expect(header.Get(identity.HeaderRenewBefore)).To(ConsistOf(renewBefore.String()))
		Expect(leftBehind()).To(BeEmpty())
	})

	It("approves only the request it created, and leaves a person's CertificateRequest for the same identity alone", func() {
		pod := createBoundPod(ctx, appNamespace, "cart-1", "cart")
		// Someone else's request that looks like knit's: same labels, annotations, issuer,
		// lifetime, usages and a valid CSR for the same SPIFFE ID.
		theirs := &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "knit-workload-", Namespace: caNamespace,
				Labels:      map[string]string{identity.LabelWorkloadCertificate: "true", "app.kubernetes.io/managed-by": "knit"},
				Annotations: map[string]string{identity.AnnotationIdentity: cartID, identity.AnnotationPod: appNamespace + "/cart-1"}},
			Spec: cmapi.CertificateRequestSpec{
				Request: []byte(workloadCSR(newP256(), cartID)), Duration: &metav1.Duration{Duration: duration},
				Usages:    []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth, cmapi.UsageClientAuth},
				IssuerRef: issuerRef,
			},
		}
		Expect(k8sClient.Create(ctx, theirs)).To(Succeed())
		DeferCleanup(func() { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, theirs))).To(Succeed()) })

		_, _, err := call(podToken(ctx, pod, injection.TokenAudience), workloadCSR(newP256(), cartID))
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(theirs), theirs)).To(Succeed(), "knit leaves the person's request in place")
		Expect(theirs.Status.Conditions).NotTo(ContainElement(HaveField("Type", Or(
			Equal(cmapi.CertificateRequestConditionApproved), Equal(cmapi.CertificateRequestConditionDenied)))),
			"knit neither approves nor denies a request it did not create")
		Expect(theirs.Status.Certificate).To(BeEmpty())
	})

	It("with the external-approver switch approves nothing: the request waits for another approver, and is refused when none comes", func() {
		limits := identity.DefaultLimits()
		limits.Timeout = 5 * time.Second
		external := newServer(false, limits, prometheus.NewRegistry())
		pod := createBoundPod(ctx, appNamespace, "cart-2", "cart")
		token := podToken(ctx, pod, injection.TokenAudience)

		By("no approver: the request is never signed (knit did not approve it) and the call ends at its deadline")
		_, _, err := callOn(external, token, workloadCSR(newP256(), cartID))
		Expect(identityReason(err)).To(Equal(identity.ReasonIssuanceTimeout), "%v", err)
		Expect(status.Convert(err).Message()).To(ContainSubstring("the request approved?"))
		Expect(leftBehind()).To(BeEmpty(), "the unanswered request is removed")

		By("an external approver (approver-policy's part) approves: the certificate is issued")
		type answer struct {
			resp *securityapi.IstioCertificateResponse
			err  error
		}
		done := make(chan answer, 1)
		go func() {
			resp, _, err := callOn(external, token, workloadCSR(newP256(), cartID))
			done <- answer{resp, err}
		}()
		var pending cmapi.CertificateRequest
		Eventually(func(g Gomega) {
			list := leftBehind()
			g.Expect(list).To(HaveLen(1))
			pending = list[0]
		}).Should(Succeed())
		Expect(pending.Status.Conditions).To(BeEmpty(), "knit did not approve it")
		apiutil.SetCertificateRequestCondition(&pending, cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue,
			"policy.cert-manager.io", "approved by the test's stand-in for approver-policy")
		Expect(k8sClient.Status().Update(ctx, &pending)).To(Succeed())
		var a answer
		Eventually(done).WithTimeout(time.Minute).Should(Receive(&a))
		Expect(a.err).NotTo(HaveOccurred())
		Expect(parsePEMCert(a.resp.CertChain[0]).URIs[0].String()).To(Equal(cartID))
	})

	It("refuses a token for another audience", func() {
		expectRefused(podToken(ctx, cartPod, "https://kubernetes.default.svc"), workloadCSR(newP256(), cartID),
			identity.ReasonWrongAudience, codes.Unauthenticated)
	})

	It("refuses the token of another ServiceAccount", func() {
		other := createBoundPod(ctx, appNamespace, "other-0", "other")
		expectRefused(podToken(ctx, other, injection.TokenAudience), workloadCSR(newP256(), cartID),
			identity.ReasonIdentityMismatch, codes.PermissionDenied)
	})

	It("refuses a SAN for another namespace", func() {
		expectRefused(podToken(ctx, cartPod, injection.TokenAudience),
			workloadCSR(newP256(), identity.SPIFFEID(trustDomain, "identity-other", "cart")),
			identity.ReasonIdentityMismatch, codes.PermissionDenied)
	})

	It("refuses an extra DNS SAN", func() {
		expectRefused(podToken(ctx, cartPod, injection.TokenAudience), workloadCSR(newP256(), cartID, "cart.identity-shop.svc"),
			identity.ReasonForbiddenName, codes.InvalidArgument)
	})

	It("refuses an expired token", func() {
		expectRefused(expired(podToken(ctx, cartPod, injection.TokenAudience)), workloadCSR(newP256(), cartID),
			identity.ReasonTokenExpired, codes.Unauthenticated)
	})

	It("refuses the token of a deleted pod", func() {
		gone := createBoundPod(ctx, appNamespace, "cart-gone", "cart")
		token := podToken(ctx, gone, injection.TokenAudience)
		Expect(k8sClient.Delete(ctx, gone, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() error {
			return k8sClient.Get(ctx, client.ObjectKeyFromObject(gone), &corev1.Pod{})
		}).Should(Satisfy(apierrors.IsNotFound))
		expectRefused(token, workloadCSR(newP256(), cartID), identity.ReasonUnknownPod, codes.PermissionDenied)
	})

	It("refuses the token of a terminating pod", func() {
		ending := createBoundPod(ctx, appNamespace, "cart-ending", "cart", "knit.dev/test-hold")
		token := podToken(ctx, ending, injection.TokenAudience)
		Expect(k8sClient.Delete(ctx, ending)).To(Succeed())
		DeferCleanup(func() {
			Expect(k8sClient.Patch(ctx, ending, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))).To(Succeed())
		})
		expectRefused(token, workloadCSR(newP256(), cartID), identity.ReasonPodTerminating, codes.PermissionDenied)
	})

	It("refuses a malformed CSR", func() {
		expectRefused(podToken(ctx, cartPod, injection.TokenAudience), "-----BEGIN CERTIFICATE REQUEST-----\nMIIBkjCB/AIBADA=\n-----END CERTIFICATE REQUEST-----\n",
			identity.ReasonMalformedCSR, codes.InvalidArgument)
	})

	It("refuses a 1 MiB request before reading it", func() {
		expectRefused(podToken(ctx, cartPod, injection.TokenAudience), strings.Repeat("A", 1<<20),
			identity.ReasonTooLarge, codes.ResourceExhausted)
	})

	It("refuses a request without a token", func() {
		expectRefused("", workloadCSR(newP256(), cartID), identity.ReasonNoToken, codes.Unauthenticated)
	})

	It("rate-limits a pod that asks too often", func() {
		busy := createBoundPod(ctx, appNamespace, "cart-busy", "cart")
		token := podToken(ctx, busy, injection.TokenAudience)
		wrong := workloadCSR(newP256(), identity.SPIFFEID(trustDomain, "identity-other", "cart"))
		for range 4 { // the burst, each refused for its SAN after the rate check
			_, _, err := call(token, wrong)
			Expect(identityReason(err)).To(Equal(identity.ReasonIdentityMismatch))
		}
		expectRefused(token, workloadCSR(newP256(), cartID), identity.ReasonRateLimited, codes.ResourceExhausted)
	})
})

func identityReason(err error) identity.Reason {
	msg := status.Convert(err).Message()
	reason, _, _ := strings.Cut(msg, ": ")
	return identity.Reason(reason)
}

// startCAIssuer makes a self-signed root and a CA Issuer of it in ns, and waits until it is ready.
func startCAIssuer(ctx context.Context, ns string) cmmeta.IssuerReference {
	GinkgoHelper()
	ref := func(name string) cmmeta.IssuerReference {
		return cmmeta.IssuerReference{Name: name, Kind: "Issuer", Group: "cert-manager.io"}
	}
	Expect(k8sClient.Create(ctx, &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "identity-selfsigned", Namespace: ns},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}}})).To(Succeed())
	root := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "identity-root", Namespace: ns}, Spec: cmapi.CertificateSpec{
		IsCA: true, CommonName: "identity test root", SecretName: "identity-root",
		PrivateKey: &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256},
		IssuerRef:  ref("identity-selfsigned"),
	}}
	Expect(k8sClient.Create(ctx, root)).To(Succeed())
	Eventually(func(g Gomega) { certReady(g, client.ObjectKeyFromObject(root)) }).WithTimeout(60 * time.Second).Should(Succeed())
	Expect(k8sClient.Create(ctx, &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "identity-ca", Namespace: ns},
		Spec: cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "identity-root"}}}})).To(Succeed())
	Eventually(func(g Gomega) {
		var iss cmapi.Issuer
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "identity-ca"}, &iss)).To(Succeed())
		g.Expect(iss.Status.Conditions).To(ContainElement(HaveField("Status", cmmeta.ConditionTrue)))
	}).WithTimeout(60 * time.Second).Should(Succeed())
	return ref("identity-ca")
}

func createBoundPod(ctx context.Context, ns, name, serviceAccount string, finalizers ...string) *corev1.Pod {
	GinkgoHelper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Finalizers: finalizers,
			Labels: map[string]string{injection.AnnotationInject: injection.InjectFalse}},
		Spec: corev1.PodSpec{ServiceAccountName: serviceAccount, Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	return pod
}

// podToken asks the TokenRequest API for a token of the pod's ServiceAccount bound to the pod,
// as the kubelet does for the injector's projected volume.
func podToken(ctx context.Context, pod *corev1.Pod, audience string) string {
	GinkgoHelper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600),
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: pod.Spec.ServiceAccountName, Namespace: pod.Namespace}}
	Expect(k8sClient.SubResource("token").Create(ctx, sa, req)).To(Succeed())
	return req.Status.Token
}

// expired re-signs a genuine token with the API server's own key, its lifetime moved an hour
// back: everything about it is right but the time.
func expired(token string) string {
	GinkgoHelper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	var claims map[string]any
	Expect(json.Unmarshal(raw, &claims)).To(Succeed())
	for _, k := range []string{"exp", "iat", "nbf"} {
		claims[k] = claims[k].(float64) - 3600
	}
	payload, err := json.Marshal(claims)
	Expect(err).NotTo(HaveOccurred())
	signingInput := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	key, err := env.ServiceAccountSigningKey()
	Expect(err).NotTo(HaveOccurred())
	ec, ok := key.(*ecdsa.PrivateKey)
	Expect(ok).To(BeTrue(), "envtest signs tokens with ES256")
	digest := sha256.Sum256([]byte(signingInput))
	r, s, err := ecdsa.Sign(rand.Reader, ec, digest[:])
	Expect(err).NotTo(HaveOccurred())
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func newP256() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	return k
}

func workloadCSR(key crypto.Signer, id string, dnsNames ...string) string {
	GinkgoHelper()
	u, err := url.Parse(id)
	Expect(err).NotTo(HaveOccurred())
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}, DNSNames: dnsNames}, key)
	Expect(err).NotTo(HaveOccurred())
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func parsePEMCert(text string) *x509.Certificate {
	GinkgoHelper()
	b, _ := pem.Decode([]byte(text))
	Expect(b).NotTo(BeNil())
	c, err := x509.ParseCertificate(b.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return c
}
