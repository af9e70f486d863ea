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
	"crypto/x509"
	"net"
	"slices"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/controlplane/translate"
	"github.com/knit-mesh/knit/controlplane/xds"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// The path from a proxy's ACK or NACK to `kubectl get mesh`: a real xDS server, running with the
// RBAC the operator gives a revision's control plane, reports into its MeshRevision's status,
// and the operator's Mesh reconciler adds the reports up.
var _ = Describe("The data plane's status", Ordered, Label("xds"), func() {
	const (
		ns         = "dp-shop"
		cpRevision = "default-v0-1-0"
		cpPod      = "knit-controlplane-v0-1-0-5c8d7-x2x9q"
	)
	var (
		ctx       context.Context
		stopCP    context.CancelFunc
		cpDone    chan error
		addr      string
		roots     *x509.CertPool
		clientset *kubernetes.Clientset
		podA      *corev1.Pod
		podB      *corev1.Pod
		a, b      *adsClient
	)
	cluster := translate.ClusterName(ns, "cart", 80)

	report := func(g Gomega) meshv1.ControlPlaneReport {
		var rev meshv1.MeshRevision
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: cpRevision}, &rev)).To(Succeed())
		i := slices.IndexFunc(rev.Status.ControlPlanes, func(r meshv1.ControlPlaneReport) bool { return r.Pod == cpPod })
		g.Expect(i).To(BeNumerically(">=", 0), "no report of %s in %+v", cpPod, rev.Status.ControlPlanes)
		return rev.Status.ControlPlanes[i]
	}
	dataPlane := func(g Gomega) meshv1.DataPlaneStatus {
		m := getMesh(g)
		g.Expect(m.Status.DataPlane).NotTo(BeNil())
		return *m.Status.DataPlane
	}
	token := func(pod *corev1.Pod) string {
		tr, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, "app", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
			Audiences:         []string{injection.TokenAudience},
			ExpirationSeconds: ptr.To[int64](600),
			BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		return tr.Status.Token
	}

	BeforeAll(func() {
		ctx = context.Background()
		deleteMesh(ctx)
		DeferCleanup(func() { deleteMesh(ctx) })
		Expect(k8sClient.Create(ctx, sampleMesh())).To(Succeed())
		// The operator gives the revision's control plane its RBAC; the server below runs with it.
		Eventually(func(g Gomega) {
			var role rbacv1.ClusterRole
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: cpName}, &role)).To(Succeed())
			g.Expect(role.Rules).To(ContainElement(HaveField("Resources", ContainElement("meshrevisions/status"))))
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Name: cpName}, &rbacv1.ClusterRoleBinding{})).To(Succeed())
		}).WithTimeout(30 * time.Second).Should(Succeed())

		var err error
		clientset, err = kubernetes.NewForConfig(env.Config)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}})).To(Succeed())
		podA, podB = meshedAppPod(ctx, ns, "a"), meshedAppPod(ctx, ns, "b")
		Expect(k8sClient.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cart"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, cartSlice(ns, "10.2.0.1"))).To(Succeed())

		asControlPlane := rest.CopyConfig(env.Config)
		asControlPlane.Impersonate = rest.ImpersonationConfig{
			UserName: "system:serviceaccount:" + cpNamespace + ":" + cpName,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + cpNamespace, "system:authenticated"},
		}
		scheme, err := xds.Scheme()
		Expect(err).NotTo(HaveOccurred())
		reportClient, err := client.New(asControlPlane, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		cert, pool := selfSignedServing("knit-controlplane-test.knit-system.svc")
		roots = pool
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		addr = lis.Addr().String()
		var cpCtx context.Context
		cpCtx, stopCP = context.WithCancel(ctx)
		DeferCleanup(func() { stopCP() })
		informers, err := xds.NewCache(env.Config)
		Expect(err).NotTo(HaveOccurred())
		go func() { _ = informers.Start(cpCtx) }()
		srv, err := xds.New(xds.Options{
			Listener:      lis,
			TLS:           &tls.Config{Certificates: []tls.Certificate{cert}},
			Authenticator: xds.TokenReviewer{Client: clientset},
			Reader:        informers,
			Informers:     informers,
			TrustDomain:   "cluster.local",
			Debounce:      50 * time.Millisecond,
			Report:        &xds.ReportOptions{Client: reportClient, Revision: cpRevision, Pod: cpPod, MinInterval: 100 * time.Millisecond},
			Registry:      prometheus.NewRegistry(),
			Log:           GinkgoLogr.WithName("xds"),
		})
		Expect(err).NotTo(HaveOccurred())
		cpDone = make(chan error, 1)
		go func() { cpDone <- srv.Start(cpCtx) }()
	})

	AfterAll(func() {
		for _, c := range []*adsClient{a, b} {
			if c != nil {
				c.close()
			}
		}
	})

	It("counts the proxies connected to a control-plane pod that accepted their configuration", func() {
		a = dialADS(ctx, addr, roots, token(podA), ns+"/a")
		b = dialADS(ctx, addr, roots, token(podB), ns+"/b")
		Eventually(a.endpoints).WithArguments(cluster).Should(ConsistOf("10.2.0.1:8080"))
		Eventually(b.endpoints).WithArguments(cluster).Should(ConsistOf("10.2.0.1:8080"))

		Eventually(func(g Gomega) {
			r := report(g)
			g.Expect([]int32{r.Connected, r.UpToDate, r.Rejecting}).To(Equal([]int32{2, 2, 0}))
			g.Expect(r.Rejection).To(BeNil())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			dp := dataPlane(g)
			g.Expect([]int32{dp.Connected, dp.UpToDate, dp.Rejecting}).To(Equal([]int32{2, 2, 0}))
			c := expectCondition(g, getMesh(g), meshv1.ConditionDataPlaneConfigured, metav1.ConditionTrue, meshv1.ReasonAsExpected)
			g.Expect(c.Message).To(ContainSubstring("2 of 2 connected proxies run their latest one"))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("names a proxy that refuses its configuration on the Mesh, and does not send that configuration again", func() {
		sent := a.sent(cluster)
		a.nackNext(resourcev3.EndpointType, "endpoint 10.2.0.3:8080 refused by the test")
		updateCartSlice(ctx, ns, "10.2.0.3")

		Eventually(func(g Gomega) {
			r := report(g)
			g.Expect([]int32{r.Connected, r.UpToDate, r.Rejecting}).To(Equal([]int32{2, 1, 1}))
			g.Expect(r.Rejection).NotTo(BeNil())
			g.Expect(*r.Rejection).To(And(HaveField("Proxy", ns+"/a"), HaveField("TypeURL", resourcev3.EndpointType),
				HaveField("Message", "endpoint 10.2.0.3:8080 refused by the test")))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			dp := dataPlane(g)
			g.Expect([]int32{dp.Connected, dp.UpToDate, dp.Rejecting}).To(Equal([]int32{2, 1, 1}))
			c := expectCondition(g, getMesh(g), meshv1.ConditionDataPlaneConfigured, metav1.ConditionFalse, meshv1.ReasonConfigRejected)
			g.Expect(c.Message).To(And(
				ContainSubstring("1 of 2 connected proxies refuse"),
				ContainSubstring("proxy "+ns+"/a refused "+resourcev3.EndpointType),
				ContainSubstring("control-plane pod "+cpPod+" (MeshRevision "+cpRevision+")"),
				ContainSubstring("endpoint 10.2.0.3:8080 refused by the test"),
			))
		}).WithTimeout(30 * time.Second).Should(Succeed())
		Expect(a.sent(cluster)).To(Equal(sent+1), "the refused endpoints were sent once")

		// The next change is the next response: the refused one was not pushed again meanwhile.
		// The proxy accepts it, and the Mesh says so.
		updateCartSlice(ctx, ns, "10.2.0.4")
		Eventually(a.endpoints).WithArguments(cluster).Should(ConsistOf("10.2.0.4:8080"))
		Expect(a.sent(cluster)).To(Equal(sent + 2))
		Eventually(func(g Gomega) {
			dp := dataPlane(g)
			g.Expect([]int32{dp.Connected, dp.UpToDate, dp.Rejecting}).To(Equal([]int32{2, 2, 0}))
			expectCondition(g, getMesh(g), meshv1.ConditionDataPlaneConfigured, metav1.ConditionTrue, meshv1.ReasonAsExpected)
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("stops counting a proxy that disconnects", func() {
		b.close()
		Eventually(func(g Gomega) {
			r := report(g)
			g.Expect([]int32{r.Connected, r.UpToDate}).To(Equal([]int32{1, 1}))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			dp := dataPlane(g)
			g.Expect([]int32{dp.Connected, dp.UpToDate}).To(Equal([]int32{1, 1}))
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})

	It("counts no proxy as connected or up to date once its control-plane pod stops", func() {
		stopCP()
		Eventually(cpDone, 30*time.Second).Should(Receive(BeNil()))
		var rev meshv1.MeshRevision
		Expect(k8sClient.Get(ctx, client.ObjectKey{Name: cpRevision}, &rev)).To(Succeed())
		Expect(rev.Status.ControlPlanes).To(BeEmpty(), "the stopped pod removes its report")
		Eventually(func(g Gomega) {
			dp := dataPlane(g)
			g.Expect([]int32{dp.Connected, dp.UpToDate, dp.Rejecting}).To(Equal([]int32{0, 0, 0}))
			expectCondition(g, getMesh(g), meshv1.ConditionDataPlaneConfigured, metav1.ConditionUnknown, meshv1.ReasonNoReports)
		}).WithTimeout(30 * time.Second).Should(Succeed())
	})
})
