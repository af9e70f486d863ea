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
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/controlplane/translate"
	"github.com/knit-mesh/knit/controlplane/xds"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// The xDS server against the real API server: real informers, real TokenReviews of real
// pod-bound tokens, a real gRPC client over TLS on loopback speaking delta ADS.
var _ = Describe("xDS server", Ordered, Label("xds"), func() {
	const shop, web = "xds-shop", "xds-web"
	var (
		ctx       context.Context
		cancel    context.CancelFunc
		addr      string
		roots     *x509.CertPool
		registry  *prometheus.Registry
		clientset *kubernetes.Clientset
		xdsClient client.Client
		cartIP    string
		shopPod   *corev1.Pod
		webPod    *corev1.Pod
	)

	BeforeAll(func() {
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(func() { cancel() })
		var err error
		clientset, err = kubernetes.NewForConfig(env.Config)
		Expect(err).NotTo(HaveOccurred())
		scheme, err := xds.Scheme()
		Expect(err).NotTo(HaveOccurred())
		xdsClient, err = client.New(env.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		for _, ns := range []string{shop, web} {
			Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}})).To(Succeed())
		}
		shopPod = meshedAppPod(ctx, shop, "client-0")
		webPod = meshedAppPod(ctx, web, "client-0")

		cart := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "cart"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		}
		Expect(k8sClient.Create(ctx, cart)).To(Succeed())
		cartIP = cart.Spec.ClusterIP
		Expect(cartIP).NotTo(BeEmpty())
		Expect(k8sClient.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "cart-v2"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, cartSlice(shop, "10.1.0.1"))).To(Succeed())

		cert, pool := selfSignedServing("knit-controlplane-test.knit-system.svc")
		roots = pool
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		addr = lis.Addr().String()
		informers, err := xds.NewCache(env.Config)
		Expect(err).NotTo(HaveOccurred())
		go func() { _ = informers.Start(ctx) }()
		registry = prometheus.NewRegistry()
		srv, err := xds.New(xds.Options{
			Listener:      lis,
			TLS:           &tls.Config{Certificates: []tls.Certificate{cert}},
			Authenticator: xds.TokenReviewer{Client: clientset},
			Reader:        informers,
			Informers:     informers,
			StatusWriter:  xdsClient,
			TrustDomain:   "cluster.local",
			Debounce:      50 * time.Millisecond,
			Registry:      registry,
			Log:           GinkgoLogr.WithName("xds"),
		})
		Expect(err).NotTo(HaveOccurred())
		done := make(chan error, 1)
		go func() { done <- srv.Start(ctx) }()
		DeferCleanup(func() { cancel(); Eventually(done, 30*time.Second).Should(Receive(BeNil())) })
	})

	token := func(pod *corev1.Pod, audience string) string {
		tr, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, "app", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: ptr.To[int64](600),
			BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		return tr.Status.Token
	}
	connect := func(tok, nodeID string) *adsClient {
		return dialADS(ctx, addr, roots, tok, nodeID)
	}

	It("sends a pod its namespace's clusters, endpoints, listeners and routes", func() {
		c := connect(token(shopPod, injection.TokenAudience), shop+"/client-0")
		defer c.close()
		cluster := translate.ClusterName(shop, "cart", 80)
		Eventually(c.endpoints).WithArguments(cluster).Should(ConsistOf("10.1.0.1:8080"))
		Eventually(c.has).WithArguments(resourcev3.ClusterType, cluster).Should(BeTrue())
		Eventually(c.has).WithArguments(resourcev3.ListenerType, translate.ListenerName(cartIP, 80)).Should(BeTrue())
		Eventually(c.has).WithArguments(resourcev3.RouteType, translate.RouteConfigName(shop, "cart", 80)).Should(BeTrue())
	})

	It("pushes an EndpointSlice change to connected proxies", func() {
		c := connect(token(shopPod, injection.TokenAudience), shop+"/client-0")
		defer c.close()
		cluster := translate.ClusterName(shop, "cart", 80)
		Eventually(c.endpoints).WithArguments(cluster).Should(ConsistOf("10.1.0.1:8080"))
		updateCartSlice(ctx, shop, "10.1.0.1", "10.1.0.2")
		Eventually(c.endpoints).WithArguments(cluster).Should(ConsistOf("10.1.0.1:8080", "10.1.0.2:8080"))
	})

	It("translates and sends only the Service whose EndpointSlice changed", func() {
		c := connect(token(shopPod, injection.TokenAudience), shop+"/client-0")
		defer c.close()
		cluster, other := translate.ClusterName(shop, "cart", 80), translate.ClusterName(shop, "cart-v2", 80)
		Eventually(c.has).WithArguments(resourcev3.EndpointType, other).Should(BeTrue())
		Eventually(c.endpoints).WithArguments(cluster).ShouldNot(BeEmpty())
		translated := func() float64 { return metricValue(registry, "knit_xds_translated_services_total") }
		// A whole translation reads every Service of the API server (cart, cart-v2 and those of
		// the other specs); an endpoint change of cart translates cart. Retried: a change of
		// Services elsewhere may land in the same translation.
		next := 0
		Eventually(func() float64 {
			before, otherSent := translated(), c.sent(other)
			next++
			ip := fmt.Sprintf("10.1.1.%d", next)
			updateCartSlice(ctx, shop, ip)
			Eventually(c.endpoints).WithArguments(cluster).WithTimeout(10 * time.Second).Should(ConsistOf(ip + ":8080"))
			Expect(c.sent(other)).To(Equal(otherSent), "cart-v2's endpoints were sent again")
			return translated() - before
		}).WithTimeout(30 * time.Second).Should(Equal(1.0))
	})

	It("gives consumer routes only to clients in the route's namespace", func() {
		Expect(xdsClient.Create(ctx, &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: web, Name: "cart-to-v2"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{
					Group: ptr.To(gwv1.Group("")), Kind: ptr.To(gwv1.Kind("Service")), Namespace: ptr.To(gwv1.Namespace(shop)), Name: "cart",
				}}},
				Rules: []gwv1.HTTPRouteRule{{Filters: []gwv1.HTTPRouteFilter{{
					Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{StatusCode: ptr.To(308)},
				}}}},
			},
		})).To(Succeed())
		webClient := connect(token(webPod, injection.TokenAudience), web+"/client-0")
		defer webClient.close()
		shopClient := connect(token(shopPod, injection.TokenAudience), shop+"/client-0")
		defer shopClient.close()
		name := translate.RouteConfigName(shop, "cart", 80)
		Eventually(webClient.firstRoute).WithArguments(name).Should(Equal("httproute/" + web + "/cart-to-v2/rule/0/match/0"))
		Eventually(shopClient.firstRoute).WithArguments(name).Should(Equal("default"))
	})

	It("writes GAMMA route status with the reason a backend does not resolve", func() {
		route := &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "to-nowhere"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{
					Group: ptr.To(gwv1.Group("")), Kind: ptr.To(gwv1.Kind("Service")), Name: "cart", Port: ptr.To[int32](80),
				}}},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{Name: "nowhere", Port: ptr.To[int32](80)},
				}}}}},
			},
		}
		Expect(xdsClient.Create(ctx, route)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(xdsClient.Get(ctx, client.ObjectKeyFromObject(route), route)).To(Succeed())
			g.Expect(route.Status.Parents).To(HaveLen(1))
			p := route.Status.Parents[0]
			g.Expect(p.ControllerName).To(Equal(translate.ControllerName))
			g.Expect(p.Conditions).To(ContainElements(
				And(HaveField("Type", "Accepted"), HaveField("Status", metav1.ConditionTrue), HaveField("ObservedGeneration", route.Generation)),
				And(HaveField("Type", "ResolvedRefs"), HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "BackendNotFound")),
			))
		}).Should(Succeed())
		// The rule still answers, with a 500, in the proxies of the namespace.
		c := connect(token(shopPod, injection.TokenAudience), shop+"/client-0")
		defer c.close()
		Eventually(c.firstRoute).WithArguments(translate.RouteConfigName(shop, "cart", 80)).Should(Equal("httproute/" + shop + "/to-nowhere/rule/0/match/0"))
	})

	It("resolves a backendRef to another namespace only once a ReferenceGrant there allows it", func() {
		Expect(k8sClient.Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: web, Name: "menu"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		})).To(Succeed())
		route := &gwv1.HTTPRoute{
			ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "to-menu"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{
					Group: ptr.To(gwv1.Group("")), Kind: ptr.To(gwv1.Kind("Service")), Name: "cart-v2", Port: ptr.To[int32](80),
				}}},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{Name: "menu", Namespace: ptr.To(gwv1.Namespace(web)), Port: ptr.To[int32](80)},
				}}}}},
			},
		}
		Expect(xdsClient.Create(ctx, route)).To(Succeed())
		resolvedRefs := func(g Gomega) metav1.Condition {
			g.Expect(xdsClient.Get(ctx, client.ObjectKeyFromObject(route), route)).To(Succeed())
			g.Expect(route.Status.Parents).To(HaveLen(1))
			c := meta.FindStatusCondition(route.Status.Parents[0].Conditions, "ResolvedRefs")
			g.Expect(c).NotTo(BeNil())
			return *c
		}
		Eventually(resolvedRefs).WithTimeout(30 * time.Second).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "RefNotPermitted")))
		Expect(xdsClient.Create(ctx, &gwv1.ReferenceGrant{
			ObjectMeta: metav1.ObjectMeta{Namespace: web, Name: "shop-routes"},
			Spec: gwv1.ReferenceGrantSpec{
				From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: shop}},
				To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service", Name: ptr.To(gwv1.ObjectName("menu"))}},
			},
		})).To(Succeed())
		Eventually(resolvedRefs).WithTimeout(30 * time.Second).Should(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "ResolvedRefs")))
	})

	It("counts a NACK and does not send the refused configuration again", func() {
		c := connect(token(shopPod, injection.TokenAudience), shop+"/client-0")
		defer c.close()
		cluster := translate.ClusterName(shop, "cart", 80)
		Eventually(c.has).WithArguments(resourcev3.EndpointType, cluster).Should(BeTrue())
		nacks := testutil.ToFloat64(counter(registry, "knit_xds_nacks_total", "ClusterLoadAssignment"))
		c.nackNext(resourcev3.EndpointType, "endpoint 10.1.0.3 refused by the test")
		updateCartSlice(ctx, shop, "10.1.0.3")
		Eventually(func() float64 {
			return testutil.ToFloat64(counter(registry, "knit_xds_nacks_total", "ClusterLoadAssignment"))
		}).Should(Equal(nacks + 1))
		// The next EDS response the proxy sees is the one for the next change, not a re-push of
		// the refused one.
		before := c.sent(cluster)
		updateCartSlice(ctx, shop, "10.1.0.4")
		Eventually(c.endpoints).WithArguments(cluster).Should(ConsistOf("10.1.0.4:8080"))
		Expect(c.sent(cluster)).To(Equal(before + 1))
	})

	DescribeTable("refuses a stream",
		func(tok func() string, nodeID string, code codes.Code, message string) {
			c := connect(tok(), nodeID)
			defer c.close()
			Eventually(c.err).Should(And(
				WithTransform(grpcstatus.Code, Equal(code)),
				WithTransform(func(err error) string { return grpcstatus.Convert(err).Message() }, ContainSubstring(message)),
			))
		},
		Entry("without a token", func() string { return "" }, shop+"/client-0", codes.Unauthenticated, "missing authorization"),
		Entry("with a token that is not one", func() string { return "not-a-token" }, shop+"/client-0", codes.Unauthenticated, "not authenticated"),
		Entry("with a token for another audience", func() string { return token(shopPod, "other.example") }, shop+"/client-0", codes.Unauthenticated, "not authenticated"),
		Entry("whose node.id is another pod", func() string { return token(shopPod, injection.TokenAudience) }, web+"/client-0", codes.PermissionDenied, "not the pod the token is bound to"),
	)
})

// meshedAppPod creates a pod as the injector leaves it (the API server has no kubelet, so it
// stays Pending; its token can still be bound to it).
func meshedAppPod(ctx context.Context, ns, name string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{injection.AnnotationInjectedRevision: "default-v1"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			InitContainers:     []corev1.Container{{Name: injection.ProxyContainerName, Image: "knit-proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}},
			Containers:         []corev1.Container{{Name: "app", Image: "app"}},
		},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	return pod
}

func cartSlice(ns string, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "cart-1", Labels: map[string]string{discoveryv1.LabelServiceName: "cart"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func updateCartSlice(ctx context.Context, ns string, ips ...string) {
	var s discoveryv1.EndpointSlice
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cart-1"}, &s)).To(Succeed())
	s.Endpoints = cartSlice(ns, ips...).Endpoints
	Expect(k8sClient.Update(ctx, &s)).To(Succeed())
}

func counter(reg *prometheus.Registry, name, typ string) prometheus.Collector {
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		families, err := reg.Gather()
		Expect(err).NotTo(HaveOccurred())
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "type" && l.GetValue() == typ {
						ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
						return
					}
				}
			}
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.CounterValue, 0)
	})
}

// metricValue is the sum of a counter's series (0 when there is none).
func metricValue(reg *prometheus.Registry, name string) float64 {
	families, err := reg.Gather()
	Expect(err).NotTo(HaveOccurred())
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// selfSignedServing is a serving certificate for dnsName and 127.0.0.1 and a pool that trusts it.
func selfSignedServing(dnsName string) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	leaf, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// adsClient is a minimal delta ADS client, as knit-proxy is one: it subscribes to the four
// types with wildcard, ACKs every response and keeps the resources it was sent.
type adsClient struct {
	conn   *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel context.CancelFunc
	state  chan func(*adsState)
	errc   chan error
}

type adsState struct {
	resources map[string]map[string]proto.Message
	nonces    map[string]string
	counts    map[string]int // responses per resource name
	// nackNext is the error a type's next response is refused with ("" = ACK it).
	nackNext map[string]string
	err      error
}

func dialADS(ctx context.Context, addr string, roots *x509.CertPool, token, nodeID string) *adsClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: "knit-controlplane-test.knit-system.svc",
	})))
	Expect(err).NotTo(HaveOccurred())
	sctx, cancel := context.WithCancel(ctx)
	if token != "" {
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+token)
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	Expect(err).NotTo(HaveOccurred())
	c := &adsClient{conn: conn, stream: stream, cancel: cancel, state: make(chan func(*adsState)), errc: make(chan error, 1)}
	node := &corev3.Node{Id: nodeID}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		// A send error shows again as the stream's error on Recv.
		_ = stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typ})
		node = nil
	}
	responses := make(chan *discoveryv3.DeltaDiscoveryResponse)
	go func() {
		defer GinkgoRecover()
		for {
			resp, err := stream.Recv()
			if err != nil {
				c.errc <- err
				close(responses)
				return
			}
			responses <- resp
		}
	}()
	go func() {
		st := &adsState{resources: map[string]map[string]proto.Message{}, nonces: map[string]string{}, counts: map[string]int{}, nackNext: map[string]string{}}
		for {
			select {
			case f := <-c.state:
				f(st)
			case err := <-c.errc:
				st.err = err
			case resp, ok := <-responses:
				if !ok {
					responses = nil
					continue
				}
				typ := resp.GetTypeUrl()
				if st.resources[typ] == nil {
					st.resources[typ] = map[string]proto.Message{}
				}
				for _, r := range resp.GetResources() {
					m, err := r.GetResource().UnmarshalNew()
					if err == nil {
						st.resources[typ][r.GetName()] = m
					}
					st.counts[r.GetName()]++
				}
				for _, name := range resp.GetRemovedResources() {
					delete(st.resources[typ], name)
				}
				st.nonces[typ] = resp.GetNonce()
				req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
				if msg := st.nackNext[typ]; msg != "" {
					req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: msg}
					delete(st.nackNext, typ)
				}
				_ = stream.Send(req)
			case <-sctx.Done():
				return
			}
		}
	}()
	return c
}

func (c *adsClient) with(f func(*adsState)) {
	done := make(chan struct{})
	c.state <- func(s *adsState) { f(s); close(done) }
	<-done
}

func (c *adsClient) close() {
	c.cancel()
	_ = c.conn.Close()
}

func (c *adsClient) err() error {
	var err error
	c.with(func(s *adsState) { err = s.err })
	return err
}

func (c *adsClient) has(typ, name string) bool {
	var ok bool
	c.with(func(s *adsState) { _, ok = s.resources[typ][name] })
	return ok
}

// sent counts the responses that carried a resource.
func (c *adsClient) sent(name string) int {
	var n int
	c.with(func(s *adsState) { n = s.counts[name] })
	return n
}

func (c *adsClient) endpoints(cluster string) []string {
	var out []string
	c.with(func(s *adsState) {
		cla, _ := s.resources[resourcev3.EndpointType][cluster].(*endpointv3.ClusterLoadAssignment)
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				a := e.GetEndpoint().GetAddress().GetSocketAddress()
				out = append(out, net.JoinHostPort(a.GetAddress(), itoa(a.GetPortValue())))
			}
		}
	})
	return out
}

func (c *adsClient) firstRoute(name string) string {
	var out string
	c.with(func(s *adsState) {
		rc, _ := s.resources[resourcev3.RouteType][name].(*routev3.RouteConfiguration)
		if vh := rc.GetVirtualHosts(); len(vh) > 0 && len(vh[0].GetRoutes()) > 0 {
			out = vh[0].GetRoutes()[0].GetName()
		}
	})
	return out
}

// nackNext refuses the next response of a type, as a proxy whose validation failed does.
func (c *adsClient) nackNext(typ, message string) {
	c.with(func(s *adsState) { s.nackNext[typ] = message })
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
