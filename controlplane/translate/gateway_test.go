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

package translate

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/internal/gateway"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
	proxyxds "github.com/knit-mesh/knit/proxy/xds"
)

func gatewayParent(ns, name, section string) gwv1.ParentReference {
	ref := gwv1.ParentReference{Name: gwv1.ObjectName(name), Namespace: ptr.To(gwv1.Namespace(ns))}
	if section != "" {
		ref.SectionName = ptr.To(gwv1.SectionName(section))
	}
	return ref
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// TestGatewayRoutesServedByAGatewayProxy translates a Gateway with attached HTTPRoutes and runs
// the result in a real knit-proxy data plane in gateway mode: a request for the route's hostname
// reaches the backend, another hostname gets 404, and the routes' parent statuses say why.
func TestGatewayRoutesServedByAGatewayProxy(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "web saw "+r.Host+r.URL.Path)
	}))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	backendPort, _ := strconv.Atoi(u.Port())

	listenPort := freePort(t)
	all := gwv1.NamespacesFromAll
	gw := gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "edge", Generation: 1},
		Spec: gwv1.GatewaySpec{GatewayClassName: "knit", Listeners: []gwv1.Listener{{
			Name: "http", Port: gwv1.PortNumber(listenPort), Protocol: gwv1.HTTPProtocolType, Hostname: ptr.To(gwv1.Hostname("*.example.com")),
			AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &all}},
		}, {
			Name: "tcp", Port: 9000, Protocol: gwv1.TCPProtocolType,
		}}},
	}
	web := httpRoute("shop", "web", 0, gatewayParent("infra", "edge", ""), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backend("web", 80, 1)}})
	web.Spec.Hostnames = []gwv1.Hostname{"shop.example.com"}
	wrongSection := httpRoute("shop", "wrong-section", 1, gatewayParent("infra", "edge", "nope"), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backend("web", 80, 1)}})
	toTCP := httpRoute("shop", "to-tcp", 2, gatewayParent("infra", "edge", "tcp"), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backend("web", 80, 1)}})
	otherHost := httpRoute("shop", "other-host", 3, gatewayParent("infra", "edge", ""), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backend("web", 80, 1)}})
	otherHost.Spec.Hostnames = []gwv1.Hostname{"shop.example.org"}

	m := Translate(Inputs{
		TrustDomain:    "cluster.local",
		Services:       []corev1.Service{service("shop", "web", "10.96.0.10", port("http", 80))},
		EndpointSlices: []discoveryv1.EndpointSlice{slice("shop", "web", "http", int32(backendPort), ep("127.0.0.1", "web-1", true))},
		HTTPRoutes:     []gwv1.HTTPRoute{web, wrongSection, toTCP, otherHost},
		Gateways:       []gwv1.Gateway{gw},
	})

	for name, want := range map[string]gwv1.RouteConditionReason{
		"web": gwv1.RouteReasonAccepted, "wrong-section": gwv1.RouteReasonNoMatchingParent,
		"to-tcp": gwv1.RouteReasonNotAllowedByListeners, "other-host": gwv1.RouteReasonNoMatchingListenerHostname,
	} {
		var parents []gwv1.RouteParentStatus
		for _, s := range m.Status {
			if s.Ref.Name == name {
				parents = s.Parents
			}
		}
		if len(parents) != 1 || parents[0].ControllerName != gateway.ControllerName {
			t.Fatalf("route %s: parents %+v, want one of %s", name, parents, gateway.ControllerName)
		}
		c := meta.FindStatusCondition(parents[0].Conditions, string(gwv1.RouteConditionAccepted))
		if c == nil || c.Reason != string(want) || (c.Status == metav1.ConditionTrue) != (want == gwv1.RouteReasonAccepted) {
			t.Errorf("route %s: Accepted %+v, want reason %s", name, c, want)
		}
	}

	if _, ok := m.GatewayResources(GatewayKey{"infra", "other"}); ok {
		t.Error("resources for a Gateway that is not among the inputs")
	}
	res, ok := m.GatewayResources(GatewayKey{"infra", "edge"})
	if !ok || len(res.Listeners) != 1 || len(res.Routes) != 1 {
		t.Fatalf("gateway resources: ok=%v, %d listeners, %d route configs; want one of each (the TCP listener is not served)", ok, len(res.Listeners), len(res.Routes))
	}

	// What the proxy receives, as its xDS client would hold it.
	view := proxyxds.NewResources()
	for _, c := range res.Clusters {
		view.Clusters[c.Name] = c
	}
	for _, a := range res.LoadAssignment {
		view.Endpoints[a.ClusterName] = a
	}
	for _, l := range res.Listeners {
		view.Listeners[l.Name] = l
	}
	for _, r := range res.Routes {
		view.Routes[r.Name] = r
	}
	if _, err := proxyxds.Translate(&config.Bootstrap{}, view); err == nil {
		t.Error("a sidecar accepted a gateway's bound listener")
	}
	base := &config.Bootstrap{Admin: config.Admin{Address: "127.0.0.1:0"}, Gateway: true}
	base.SetDefaults()
	cfg, err := proxyxds.TranslateGateway(base, view)
	if err != nil {
		t.Fatalf("the gateway proxy refuses the translation: %v", err)
	}
	if len(cfg.Listeners) != 1 || cfg.Listeners[0].Address != net.JoinHostPort("0.0.0.0", strconv.Itoa(int(listenPort))) {
		t.Fatalf("listeners %+v, want one on 0.0.0.0:%d", cfg.Listeners, listenPort)
	}
	cfg.Listeners[0].Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(listenPort))) // loopback only, in a test

	p := dataplane.New(logr.Discard(), metrics.New())
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	}()
	get := func(host string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+cfg.Listeners[0].Address+"/cart", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("shop.example.com"); code != http.StatusOK || body != "web saw shop.example.com/cart" {
		t.Errorf("shop.example.com: %d %q, want 200 from the backend", code, body)
	}
	if code, _ := get("shop.example.org"); code != http.StatusNotFound {
		t.Errorf("shop.example.org: %d, want 404 (no route attached for that hostname)", code)
	}
}

// TestGRPCRoutesAttachToGatewaysAndOrderHostnames: a GRPCRoute on a Gateway gets its method
// routes (and an HTTP/2 cluster); virtual hosts go exact, then longest wildcard, then any; a
// route naming two listeners of one port is added once.
func TestGRPCRoutesAttachToGatewaysAndOrderHostnames(t *testing.T) {
	same := gwv1.NamespacesFromSame
	gw := gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "knit", Listeners: []gwv1.Listener{
			{Name: "any", Port: 80, Protocol: gwv1.HTTPProtocolType, AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &same}}},
			{Name: "wild", Port: 80, Protocol: gwv1.HTTPProtocolType, Hostname: ptr.To(gwv1.Hostname("*.example.com"))},
			{Name: "deep", Port: 80, Protocol: gwv1.HTTPProtocolType, Hostname: ptr.To(gwv1.Hostname("*.a.example.com"))},
		}},
	}
	g := gwv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "g", Generation: 1},
		Spec: gwv1.GRPCRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{gatewayParent("shop", "edge", "any"), gatewayParent("shop", "edge", "")}},
			Hostnames:       []gwv1.Hostname{"x.a.example.com", "*.example.com"},
			Rules: []gwv1.GRPCRouteRule{{
				Matches:     []gwv1.GRPCRouteMatch{{Method: &gwv1.GRPCMethodMatch{Service: ptr.To("shop.Cart"), Method: ptr.To("Get")}}},
				BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "cart", Port: ptr.To(int32(7070))}}}},
			}},
		},
	}
	m := Translate(Inputs{
		Services:   []corev1.Service{service("shop", "cart", "10.96.0.10", port("grpc", 7070))},
		GRPCRoutes: []gwv1.GRPCRoute{g},
		Gateways:   []gwv1.Gateway{gw},
	})
	res, ok := m.GatewayResources(GatewayKey{"shop", "edge"})
	if !ok || len(res.Routes) != 1 {
		t.Fatalf("gateway resources: %v %+v", ok, res.Routes)
	}
	var domains []string
	for _, vh := range res.Routes[0].VirtualHosts {
		domains = append(domains, vh.Domains...)
		if len(vh.Routes) != 1 || vh.Routes[0].GetMatch().GetPath() != "/shop.Cart/Get" {
			t.Errorf("virtual host %s: routes %v, want the one method route once", vh.Name, vh.Routes)
		}
	}
	// "any" and "wild" take both hostnames; "deep" narrows *.example.com to *.a.example.com.
	if want := []string{"x.a.example.com", "*.a.example.com", "*.example.com"}; !slices.Equal(domains, want) {
		t.Errorf("domains %v, want %v", domains, want)
	}
	if res.Clusters[0].TypedExtensionProtocolOptions[HTTPProtocolOptionsKey] == nil {
		t.Errorf("the GRPCRoute's backend does not speak HTTP/2")
	}
	if len(m.Status) != 1 || len(m.Status[0].Parents) != 2 {
		t.Fatalf("status %+v, want the route with two Gateway parents", m.Status)
	}
}

// routeReasons gives, per route name, its first parent's Accepted and ResolvedRefs reasons.
func routeReasons(m *Model) map[string][2]string {
	out := map[string][2]string{}
	for _, s := range m.Status {
		if len(s.Parents) == 0 {
			continue
		}
		var r [2]string
		if c := meta.FindStatusCondition(s.Parents[0].Conditions, string(gwv1.RouteConditionAccepted)); c != nil {
			r[0] = c.Reason
		}
		if c := meta.FindStatusCondition(s.Parents[0].Conditions, string(gwv1.RouteConditionResolvedRefs)); c != nil {
			r[1] = c.Reason
		}
		out[s.Ref.Name] = r
	}
	return out
}

// A listener that allows routes from a namespace selector takes routes of the namespaces whose
// labels match, and only those; a backendRef to another namespace resolves only where a
// ReferenceGrant there lets the route's kind and namespace refer to that Service.
func TestGatewaySelectorNamespacesAndReferenceGrants(t *testing.T) {
	selector := gwv1.NamespacesFromSelector
	gw := gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "edge", Generation: 1},
		Spec: gwv1.GatewaySpec{GatewayClassName: "knit", Listeners: []gwv1.Listener{{
			Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType,
			AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &selector,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"edge": "yes"}}}},
		}}},
	}
	toBackend := func(ns, name string) gwv1.HTTPRoute {
		b := backend("web", 80, 1)
		b.Namespace = ptr.To(gwv1.Namespace("backend"))
		return httpRoute(ns, name, 0, gatewayParent("infra", "edge", ""), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{b}})
	}
	grant := gwv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: "backend", Name: "from-team"},
		Spec: gwv1.ReferenceGrantSpec{
			From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: "team"}},
			To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service", Name: ptr.To(gwv1.ObjectName("web"))}},
		},
	}
	in := Inputs{
		TrustDomain: "cluster.local",
		Services:    []corev1.Service{service("backend", "web", "10.96.0.10", port("http", 80))},
		HTTPRoutes:  []gwv1.HTTPRoute{toBackend("team", "granted"), toBackend("other", "unselected"), toBackend("labelled", "ungranted")},
		Gateways:    []gwv1.Gateway{gw},
		NamespaceLabels: map[string]map[string]string{
			"team": {"edge": "yes"}, "labelled": {"edge": "yes"}, "other": {"edge": "no"},
		},
		ReferenceGrants: []gwv1.ReferenceGrant{grant},
	}
	got := routeReasons(Translate(in))
	want := map[string][2]string{
		"granted":    {string(gwv1.RouteReasonAccepted), string(gwv1.RouteReasonResolvedRefs)},
		"unselected": {string(gwv1.RouteReasonNotAllowedByListeners), string(gwv1.RouteReasonRefNotPermitted)},
		"ungranted":  {string(gwv1.RouteReasonAccepted), string(gwv1.RouteReasonRefNotPermitted)},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("route %s: Accepted/ResolvedRefs %v, want %v", name, got[name], w)
		}
	}
}

// A Gateway no route attaches to yet still gets a configuration its proxy accepts (a virtual
// host without routes is invalid: the proxy refused it, NACKed, and never became Ready), and
// the proxy answers 404.
func TestAGatewayWithoutRoutesIsServedWith404(t *testing.T) {
	listenPort := freePort(t)
	gw := gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "empty", Generation: 1},
		Spec: gwv1.GatewaySpec{GatewayClassName: "knit", Listeners: []gwv1.Listener{{
			Name: "http", Port: gwv1.PortNumber(listenPort), Protocol: gwv1.HTTPProtocolType,
		}}},
	}
	m := Translate(Inputs{TrustDomain: "cluster.local", Gateways: []gwv1.Gateway{gw}})
	res, ok := m.GatewayResources(GatewayKey{"infra", "empty"})
	if !ok {
		t.Fatal("no resources for the Gateway")
	}
	view := proxyxds.NewResources()
	for _, l := range res.Listeners {
		view.Listeners[l.Name] = l
	}
	for _, r := range res.Routes {
		view.Routes[r.Name] = r
	}
	base := &config.Bootstrap{Admin: config.Admin{Address: "127.0.0.1:0"}, Gateway: true}
	base.SetDefaults()
	cfg, err := proxyxds.TranslateGateway(base, view)
	if err != nil {
		t.Fatalf("the gateway proxy refuses the translation: %v", err)
	}
	cfg.Listeners[0].Address = net.JoinHostPort("127.0.0.1", strconv.Itoa(int(listenPort)))
	p := dataplane.New(logr.Discard(), metrics.New())
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	}()
	resp, err := http.Get("http://" + cfg.Listeners[0].Address + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", resp.StatusCode)
	}
}

// TestGatewayClustersMarkMeshedBackendsWithTheirIdentity: a gateway proxy gets the clusters and
// endpoint metadata sidecars get, so that, as the proxy reads them, the endpoints of a meshed
// backend are marked meshed with the SPIFFE ID of their pods' ServiceAccount (the gateway then
// originates mutual TLS to them and accepts only that identity), and those of a backend without
// sidecars are not (plaintext).
func TestGatewayClustersMarkMeshedBackendsWithTheirIdentity(t *testing.T) {
	gw := gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge", Generation: 1},
		Spec: gwv1.GatewaySpec{GatewayClassName: "knit", Listeners: []gwv1.Listener{
			{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType},
		}},
	}
	route := httpRoute("shop", "web", 0, gatewayParent("shop", "edge", ""),
		gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/web")}, BackendRefs: []gwv1.HTTPBackendRef{backend("web", 80, 1)}},
		gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/legacy")}, BackendRefs: []gwv1.HTTPBackendRef{backend("legacy", 80, 1)}})
	plainPod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "legacy-1"},
		Spec: corev1.PodSpec{ServiceAccountName: "legacy", Containers: []corev1.Container{{Name: "app"}}}}

	m := Translate(Inputs{
		TrustDomain: "cluster.local",
		Services: []corev1.Service{
			service("shop", "web", "10.96.0.10", port("http", 80)),
			service("shop", "legacy", "10.96.0.11", port("http", 80)),
		},
		EndpointSlices: []discoveryv1.EndpointSlice{
			slice("shop", "web", "http", 8080, ep("10.0.0.1", "web-1", true)),
			slice("shop", "legacy", "http", 8080, ep("10.0.0.2", "legacy-1", true)),
		},
		Pods:       []corev1.Pod{meshedPod("shop", "web-1", "web"), plainPod},
		HTTPRoutes: []gwv1.HTTPRoute{route},
		Gateways:   []gwv1.Gateway{gw},
	})
	res, ok := m.GatewayResources(GatewayKey{"shop", "edge"})
	if !ok {
		t.Fatal("no resources for the Gateway")
	}
	view := proxyxds.NewResources()
	for _, c := range res.Clusters {
		view.Clusters[c.Name] = c
	}
	for _, a := range res.LoadAssignment {
		view.Endpoints[a.ClusterName] = a
	}
	for _, l := range res.Listeners {
		view.Listeners[l.Name] = l
	}
	for _, r := range res.Routes {
		view.Routes[r.Name] = r
	}
	base := &config.Bootstrap{Admin: config.Admin{Address: "127.0.0.1:0"}, Gateway: true}
	base.SetDefaults()
	cfg, err := proxyxds.TranslateGateway(base, view)
	if err != nil {
		t.Fatalf("the gateway proxy refuses the translation: %v", err)
	}

	for _, want := range []struct {
		service  string
		endpoint config.Endpoint
	}{
		{"web", config.Endpoint{Address: "10.0.0.1:8080", Meshed: true, Identity: "spiffe://cluster.local/ns/shop/sa/web"}},
		{"legacy", config.Endpoint{Address: "10.0.0.2:8080", Meshed: false}},
	} {
		cluster := ClusterName("shop", want.service, 80)
		if !slices.ContainsFunc(cfg.Clusters, func(c config.Cluster) bool { return c.Name == cluster }) {
			t.Fatalf("the gateway has no cluster %s", cluster)
		}
		eps := cfg.EndpointsOf(cluster)
		if len(eps) != 1 || eps[0].Address != want.endpoint.Address || eps[0].Meshed != want.endpoint.Meshed ||
			(want.endpoint.Meshed && eps[0].Identity != want.endpoint.Identity) {
			t.Errorf("endpoints of %s as the gateway proxy reads them: %+v, want %+v", cluster, eps, want.endpoint)
		}
	}
	// The routes send each prefix to its backend's cluster.
	routed := map[string]bool{}
	for _, rc := range cfg.RouteConfigs {
		for _, vh := range rc.VirtualHosts {
			for _, r := range vh.Routes {
				for _, c := range r.Clusters {
					routed[c.Name] = true
				}
			}
		}
	}
	for _, svc := range []string{"web", "legacy"} {
		if !routed[ClusterName("shop", svc, 80)] {
			t.Errorf("no gateway route reaches %s (routed: %v)", svc, routed)
		}
	}
}
