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
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/webhooks/injection"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func service(ns, name, ip string, ports ...corev1.ServicePort) corev1.Service {
	return corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}, Ports: ports},
	}
}

func port(name string, p int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: corev1.ProtocolTCP}
}

func slice(ns, svc, portName string, target int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	return discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Port: ptr.To(target), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

func ep(ip, pod string, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod},
	}
}

func meshedPod(ns, name, sa string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{injection.AnnotationInjectedRevision: "r1"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			InitContainers:     []corev1.Container{{Name: injection.ProxyContainerName}},
			Containers:         []corev1.Container{{Name: "app"}},
		},
	}
}

func serviceParent(ns, name string) gwv1.ParentReference {
	ref := gwv1.ParentReference{Group: ptr.To(gwv1.Group("")), Kind: ptr.To(gwv1.Kind("Service")), Name: gwv1.ObjectName(name)}
	if ns != "" {
		ref.Namespace = ptr.To(gwv1.Namespace(ns))
	}
	return ref
}

func backend(name string, p int32, weight int32) gwv1.HTTPBackendRef {
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{
		BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr.To(p)},
		Weight:                 ptr.To(weight),
	}}
}

func httpRoute(ns, name string, age int, parent gwv1.ParentReference, rules ...gwv1.HTTPRouteRule) gwv1.HTTPRoute {
	return gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))},
		Spec:       gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parent}}, Rules: rules},
	}
}

func pathMatch(kind gwv1.PathMatchType, value string) gwv1.HTTPRouteMatch {
	return gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: ptr.To(kind), Value: ptr.To(value)}}
}

// routesOf returns the routes of a RouteConfiguration by name, failing when it is missing.
func routesOf(t *testing.T, res Resources, name string) []*routev3.Route {
	t.Helper()
	for _, rc := range res.Routes {
		if rc.Name == name {
			return rc.VirtualHosts[0].Routes
		}
	}
	t.Fatalf("no RouteConfiguration %s", name)
	return nil
}

func statusOf(t *testing.T, m *Model, ns, name string) []metav1.Condition {
	t.Helper()
	for _, s := range m.Status {
		if s.Ref.Namespace == ns && s.Ref.Name == name {
			return s.Parents[0].Conditions
		}
	}
	t.Fatalf("no status for %s/%s", ns, name)
	return nil
}

func cond(conds []metav1.Condition, t gwv1.RouteConditionType) metav1.Condition {
	for _, c := range conds {
		if c.Type == string(t) {
			return c
		}
	}
	return metav1.Condition{}
}

// validateAll checks every resource with the Envoy API's own validation rules.
func validateAll(t *testing.T, res Resources) {
	t.Helper()
	for _, c := range res.Clusters {
		if err := c.ValidateAll(); err != nil {
			t.Errorf("cluster %s: %v", c.Name, err)
		}
	}
	for _, c := range res.LoadAssignment {
		if err := c.ValidateAll(); err != nil {
			t.Errorf("endpoints %s: %v", c.ClusterName, err)
		}
	}
	for _, l := range res.Listeners {
		if err := l.ValidateAll(); err != nil {
			t.Errorf("listener %s: %v", l.Name, err)
		}
	}
	for _, r := range res.Routes {
		if err := r.ValidateAll(); err != nil {
			t.Errorf("routes %s: %v", r.Name, err)
		}
	}
}

func TestServiceWithoutRoutesSendsEverythingToItsEndpoints(t *testing.T) {
	in := Inputs{
		TrustDomain: "example.org",
		Services:    []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80), port("db-tcp", 5432))},
		EndpointSlices: []discoveryv1.EndpointSlice{
			slice("shop", "cart", "http", 8080, ep("10.0.0.2", "cart-b", true), ep("10.0.0.1", "cart-a", false)),
		},
		Pods: []corev1.Pod{meshedPod("shop", "cart-a", "cart")},
	}
	in.Services[0].Spec.Ports[1].AppProtocol = ptr.To("tcp")
	res := Translate(in).Resources("shop")
	validateAll(t, res)
	if len(res.Clusters) != 2 || res.Clusters[0].Name != "outbound|80||cart.shop.svc.cluster.local" {
		t.Fatalf("clusters: %v", res.Clusters)
	}
	if len(res.Listeners) != 2 || res.Listeners[0].Name != "10.96.0.10_80" || len(res.Listeners[0].FilterChains) != 1 {
		t.Fatalf("HTTP listener: %v", res.Listeners[0])
	}
	if len(res.Listeners[1].FilterChains) != 0 || res.Listeners[1].DefaultFilterChain == nil {
		t.Fatalf("TCP listener has HTTP chains: %v", res.Listeners[1])
	}
	if len(res.Routes) != 1 {
		t.Fatalf("a TCP port got a RouteConfiguration: %v", res.Routes)
	}
	routes := routesOf(t, res, "cart.shop.svc.cluster.local:80")
	if len(routes) != 1 || routes[0].GetRoute().GetCluster() != "outbound|80||cart.shop.svc.cluster.local" {
		t.Fatalf("default route: %v", routes)
	}
	lbs := res.LoadAssignment[0].Endpoints[0].LbEndpoints
	if len(lbs) != 2 {
		t.Fatalf("endpoints: %v", lbs)
	}
	first, second := lbs[0], lbs[1]
	if first.GetEndpoint().Address.GetSocketAddress().Address != "10.0.0.1" || first.GetEndpoint().Address.GetSocketAddress().GetPortValue() != 8080 {
		t.Errorf("endpoints not sorted or target port lost: %v", first)
	}
	if first.HealthStatus != corev3.HealthStatus_UNHEALTHY || second.HealthStatus != corev3.HealthStatus_HEALTHY {
		t.Errorf("health: %v %v", first.HealthStatus, second.HealthStatus)
	}
	md := first.Metadata.FilterMetadata["knit"].AsMap()
	if md["meshed"] != true || md["identity"] != "spiffe://example.org/ns/shop/sa/cart" || md["pod"] != "shop/cart-a" {
		t.Errorf("metadata of a meshed pod: %v", md)
	}
	if md := second.Metadata.FilterMetadata["knit"].AsMap(); md["meshed"] != false {
		t.Errorf("a pod without sidecar is meshed: %v", md)
	}
}

func TestRoutesFollowGatewayAPIPrecedence(t *testing.T) {
	svc := service("shop", "cart", "10.96.0.10", port("http", 80))
	rule := func(m ...gwv1.HTTPRouteMatch) gwv1.HTTPRouteRule {
		return gwv1.HTTPRouteRule{Matches: m, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 1)}}
	}
	withHeader := pathMatch(gwv1.PathMatchPathPrefix, "/api")
	withHeader.Headers = []gwv1.HTTPHeaderMatch{{Name: "X-Version", Value: "2"}}
	withMethod := pathMatch(gwv1.PathMatchPathPrefix, "/api")
	withMethod.Method = ptr.To(gwv1.HTTPMethodPost)
	in := Inputs{
		Services: []corev1.Service{svc},
		HTTPRoutes: []gwv1.HTTPRoute{
			httpRoute("shop", "b-newer", 2, serviceParent("", "cart"), rule(pathMatch(gwv1.PathMatchPathPrefix, "/"))),
			httpRoute("shop", "a-older", 1, serviceParent("", "cart"),
				rule(pathMatch(gwv1.PathMatchPathPrefix, "/"), pathMatch(gwv1.PathMatchPathPrefix, "/api/")),
				rule(withHeader, withMethod, pathMatch(gwv1.PathMatchExact, "/api/v1")),
				rule(pathMatch(gwv1.PathMatchRegularExpression, "/api/v[0-9]+"))),
		},
	}
	res := Translate(in).Resources("shop")
	validateAll(t, res)
	var got []string
	for _, r := range routesOf(t, res, "cart.shop.svc.cluster.local:80") {
		got = append(got, strings.TrimPrefix(r.Name, "httproute/shop/"))
	}
	want := []string{
		"a-older/rule/1/match/2", // exact
		"a-older/rule/2/match/0", // regex
		"a-older/rule/1/match/1", // prefix /api with method
		"a-older/rule/1/match/0", // prefix /api with one header
		"a-older/rule/0/match/1", // prefix /api (trailing slash ignored), no method or header
		"a-older/rule/0/match/0", // prefix / of the older route
		"b-newer/rule/0/match/0", // same match, newer route
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("order:\n got %v\nwant %v", got, want)
	}
}

func TestWeightedBackendsKeepTheShareOfAMissingBackend(t *testing.T) {
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80)), service("shop", "cart-v2", "10.96.0.11", port("http", 80))},
		HTTPRoutes: []gwv1.HTTPRoute{httpRoute("shop", "split", 0, serviceParent("", "cart"), gwv1.HTTPRouteRule{
			BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 90), backend("cart-v2", 80, 10), backend("gone", 80, 5), backend("cart-v2", 80, 0)},
		})},
	}
	m := Translate(in)
	res := m.Resources("shop")
	validateAll(t, res)
	wc := routesOf(t, res, "cart.shop.svc.cluster.local:80")[0].GetRoute().GetWeightedClusters()
	if wc == nil || len(wc.Clusters) != 3 {
		t.Fatalf("weighted clusters: %v", wc)
	}
	if wc.Clusters[0].Weight.Value != 90 || wc.Clusters[1].Name != "outbound|80||cart-v2.shop.svc.cluster.local" || wc.Clusters[2].Name != "" || wc.Clusters[2].Weight.Value != 5 {
		t.Errorf("weights: %v", wc.Clusters)
	}
	resolved := cond(statusOf(t, m, "shop", "split"), gwv1.RouteConditionResolvedRefs)
	if resolved.Status != metav1.ConditionFalse || resolved.Reason != string(gwv1.RouteReasonBackendNotFound) || !strings.Contains(resolved.Message, "shop/gone") {
		t.Errorf("ResolvedRefs: %+v", resolved)
	}
}

func TestRulesThatCannotSendAnywhereAnswer500(t *testing.T) {
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80))},
		HTTPRoutes: []gwv1.HTTPRoute{httpRoute("shop", "r", 0, serviceParent("", "cart"),
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/zero")}, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 0)}},
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/port")}, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 81, 1)}},
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/mirror")}, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 1)},
				Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterCORS, CORS: &gwv1.HTTPCORSFilter{}}}},
		)},
	}
	m := Translate(in)
	res := m.Resources("shop")
	validateAll(t, res)
	for _, r := range routesOf(t, res, "cart.shop.svc.cluster.local:80") {
		if r.GetDirectResponse().GetStatus() != 500 {
			t.Errorf("route %s: %v, want a 500 direct response", r.Name, r.Action)
		}
	}
	conds := statusOf(t, m, "shop", "r")
	if c := cond(conds, gwv1.RouteConditionResolvedRefs); c.Reason != string(gwv1.RouteReasonBackendNotFound) || !strings.Contains(c.Message, "port 81") {
		t.Errorf("ResolvedRefs: %+v", c)
	}
	if c := cond(conds, gwv1.RouteConditionPartiallyInvalid); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "CORS") {
		t.Errorf("PartiallyInvalid: %+v", c)
	}
	if c := cond(conds, gwv1.RouteConditionAccepted); c.Status != metav1.ConditionTrue {
		t.Errorf("Accepted: %+v", c)
	}
}

func TestMatchesTheProxyCannotCompileAreDropped(t *testing.T) {
	bad := pathMatch(gwv1.PathMatchRegularExpression, "/(a")
	lookahead := gwv1.HTTPRouteMatch{Headers: []gwv1.HTTPHeaderMatch{{Type: ptr.To(gwv1.HeaderMatchRegularExpression), Name: "x", Value: "(?=a)"}}}
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80))},
		HTTPRoutes: []gwv1.HTTPRoute{httpRoute("shop", "r", 0, serviceParent("", "cart"),
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{bad}, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 1)}},
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{lookahead}, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 1)}},
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/ok")}, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 1)}},
		)},
	}
	m := Translate(in)
	res := m.Resources("shop")
	validateAll(t, res)
	routes := routesOf(t, res, "cart.shop.svc.cluster.local:80")
	if len(routes) != 1 || routes[0].GetMatch().GetPath() != "/ok" {
		t.Fatalf("routes: %v", routes)
	}
	c := cond(statusOf(t, m, "shop", "r"), gwv1.RouteConditionPartiallyInvalid)
	if !strings.Contains(c.Message, "rule 0") || !strings.Contains(c.Message, "rule 1") || strings.Contains(c.Message, "rule 2") {
		t.Errorf("PartiallyInvalid: %+v", c)
	}
}

func TestConsumerRoutesReplaceProducerRoutesForTheirNamespaceOnly(t *testing.T) {
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80)), service("shop", "cart-v2", "10.96.0.11", port("http", 80))},
		HTTPRoutes: []gwv1.HTTPRoute{
			httpRoute("shop", "producer", 0, serviceParent("", "cart"), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{backend("cart-v2", 80, 1)}}),
			httpRoute("web", "consumer", 0, serviceParent("shop", "cart"), gwv1.HTTPRouteRule{
				Filters: []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{StatusCode: ptr.To(308), Hostname: ptr.To(gwv1.PreciseHostname("example.org"))}}},
			}),
		},
	}
	m := Translate(in)
	for ns, want := range map[string]string{"shop": "producer", "web": "consumer", "other": "producer"} {
		res := m.Resources(ns)
		validateAll(t, res)
		routes := routesOf(t, res, "cart.shop.svc.cluster.local:80")
		if len(routes) != 1 || !strings.Contains(routes[0].Name, "/"+want+"/") {
			t.Errorf("client in %s: %v, want the %s route", ns, routes, want)
		}
	}
	r := routesOf(t, m.Resources("web"), "cart.shop.svc.cluster.local:80")[0]
	if r.GetRedirect().GetResponseCode() != routev3.RedirectAction_PERMANENT_REDIRECT || r.GetRedirect().GetHostRedirect() != "example.org" {
		t.Errorf("redirect: %v", r.GetRedirect())
	}
}

func TestParentsThatDoNotExistAreNotAccepted(t *testing.T) {
	parentPort := serviceParent("", "cart")
	parentPort.Port = ptr.To(int32(9090))
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80))},
		HTTPRoutes: []gwv1.HTTPRoute{
			httpRoute("shop", "no-svc", 0, serviceParent("", "ghost"), gwv1.HTTPRouteRule{}),
			httpRoute("shop", "no-port", 0, parentPort, gwv1.HTTPRouteRule{}),
		},
	}
	m := Translate(in)
	for _, name := range []string{"no-svc", "no-port"} {
		if c := cond(statusOf(t, m, "shop", name), gwv1.RouteConditionAccepted); c.Status != metav1.ConditionFalse || c.Reason != string(gwv1.RouteReasonNoMatchingParent) {
			t.Errorf("%s Accepted: %+v", name, c)
		}
	}
}

func TestTenThousandRoutesOnOneServiceAreBounded(t *testing.T) {
	in := Inputs{Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80))}}
	for i := range 10000 {
		in.HTTPRoutes = append(in.HTTPRoutes, httpRoute("shop", fmt.Sprintf("r%05d", i), i, serviceParent("", "cart"),
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, fmt.Sprintf("/p%d", i))}, BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 1)}}))
	}
	m := Translate(in)
	res := m.Resources("shop")
	if n := len(routesOf(t, res, "cart.shop.svc.cluster.local:80")); n != MaxRoutesPerService {
		t.Fatalf("%d routes, want %d", n, MaxRoutesPerService)
	}
	if c := cond(statusOf(t, m, "shop", "r00000"), gwv1.RouteConditionAccepted); c.Status != metav1.ConditionTrue {
		t.Errorf("oldest route: %+v", c)
	}
	if c := cond(statusOf(t, m, "shop", "r09999"), gwv1.RouteConditionAccepted); c.Status != metav1.ConditionFalse || c.Reason != string(gwv1.RouteReasonUnsupportedValue) {
		t.Errorf("newest route: %+v", c)
	}
}

func TestGRPCRoutesMatchPathsAndSpeakHTTP2(t *testing.T) {
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("web", 7070))},
		GRPCRoutes: []gwv1.GRPCRoute{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "g"},
			Spec: gwv1.GRPCRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{serviceParent("", "cart")}},
				Rules: []gwv1.GRPCRouteRule{{
					Matches: []gwv1.GRPCRouteMatch{
						{Method: &gwv1.GRPCMethodMatch{Service: ptr.To("shop.Cart"), Method: ptr.To("Get")}},
						{Method: &gwv1.GRPCMethodMatch{Service: ptr.To("shop.Cart")}},
						{Method: &gwv1.GRPCMethodMatch{Method: ptr.To("Put")}},
					},
					BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "cart", Port: ptr.To(int32(7070))}}}},
				}},
			},
		}},
	}
	res := Translate(in).Resources("shop")
	validateAll(t, res)
	routes := routesOf(t, res, "cart.shop.svc.cluster.local:7070")
	if len(routes) != 3 || routes[0].GetMatch().GetPath() != "/shop.Cart/Get" ||
		routes[1].GetMatch().GetSafeRegex().GetRegex() != "/[^/]+/Put" || routes[2].GetMatch().GetPathSeparatedPrefix() != "/shop.Cart" {
		t.Fatalf("routes: %v", routes)
	}
	if res.Clusters[0].TypedExtensionProtocolOptions[HTTPProtocolOptionsKey] == nil {
		t.Errorf("the backend of a GRPCRoute does not speak HTTP/2: %v", res.Clusters[0])
	}
}

func TestConsumerRoutesMaySendToTheirParentServiceOnly(t *testing.T) {
	toParent := backend("cart", 80, 1)
	toParent.Namespace = ptr.To(gwv1.Namespace("shop"))
	toOther := backend("cart-v2", 80, 1)
	toOther.Namespace = ptr.To(gwv1.Namespace("shop"))
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80)), service("shop", "cart-v2", "10.96.0.11", port("http", 80))},
		HTTPRoutes: []gwv1.HTTPRoute{
			httpRoute("web", "parent", 0, serviceParent("shop", "cart"), gwv1.HTTPRouteRule{BackendRefs: []gwv1.HTTPBackendRef{toParent}}),
			httpRoute("web", "other", 0, serviceParent("shop", "cart"), gwv1.HTTPRouteRule{
				Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/other")}, BackendRefs: []gwv1.HTTPBackendRef{toOther}}),
		},
	}
	m := Translate(in)
	if c := cond(statusOf(t, m, "web", "parent"), gwv1.RouteConditionResolvedRefs); c.Status != metav1.ConditionTrue {
		t.Errorf("backendRef to the parent Service: %+v", c)
	}
	if c := cond(statusOf(t, m, "web", "other"), gwv1.RouteConditionResolvedRefs); c.Reason != string(gwv1.RouteReasonRefNotPermitted) {
		t.Errorf("backendRef to another namespace's Service: %+v", c)
	}
	routes := routesOf(t, m.Resources("web"), "cart.shop.svc.cluster.local:80")
	if len(routes) != 2 || routes[0].GetDirectResponse().GetStatus() != 500 || routes[1].GetRoute().GetCluster() != "outbound|80||cart.shop.svc.cluster.local" {
		t.Errorf("routes: %v", routes)
	}
}

func TestBackendHeaderFiltersApplyToTheirBackendOnly(t *testing.T) {
	withHeader := func(name string, weight int32, value string) gwv1.HTTPBackendRef {
		b := backend(name, 80, weight)
		b.Filters = []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gwv1.HTTPHeaderFilter{Set: []gwv1.HTTPHeader{{Name: "X-Backend", Value: value}}}}}
		return b
	}
	in := Inputs{
		Services: []corev1.Service{service("shop", "cart", "10.96.0.10", port("http", 80)), service("shop", "cart-v2", "10.96.0.11", port("http", 80))},
		HTTPRoutes: []gwv1.HTTPRoute{httpRoute("shop", "r", 0, serviceParent("", "cart"),
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/one")}, BackendRefs: []gwv1.HTTPBackendRef{withHeader("cart", 1, "one")}},
			gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchExact, "/split")}, BackendRefs: []gwv1.HTTPBackendRef{withHeader("cart", 1, "v1"), backend("cart-v2", 80, 1)}},
		)},
	}
	res := Translate(in).Resources("shop")
	validateAll(t, res)
	routes := routesOf(t, res, "cart.shop.svc.cluster.local:80")
	split, one := routes[0], routes[1] // the longer exact path first
	if h := one.GetRequestHeadersToAdd(); len(h) != 1 || h[0].GetHeader().GetValue() != "one" {
		t.Errorf("single backend's filter: %v", one)
	}
	wc := split.GetRoute().GetWeightedClusters().GetClusters()
	if len(wc) != 2 || len(wc[0].GetRequestHeadersToAdd()) != 1 || len(wc[1].GetRequestHeadersToAdd()) != 0 || len(split.GetRequestHeadersToAdd()) != 0 {
		t.Errorf("split backends' filters: %v", split)
	}
}

func TestOneServicesLoadAssignmentsAreTheWholeTranslations(t *testing.T) {
	in := Inputs{
		TrustDomain: "example.org",
		Services: []corev1.Service{
			service("shop", "cart", "10.96.0.10", port("http", 80), port("grpc", 9090), port("db-tcp", 5432)),
			service("shop", "pay", "10.96.0.11", port("http", 80)),
		},
		EndpointSlices: []discoveryv1.EndpointSlice{
			slice("shop", "cart", "http", 8080, ep("10.0.0.2", "cart-b", true), ep("10.0.0.1", "cart-a", false)),
			slice("shop", "pay", "http", 8080, ep("10.0.1.1", "pay-a", true)),
		},
		Pods: []corev1.Pod{meshedPod("shop", "cart-a", "cart"), meshedPod("shop", "cart-b", "cart"), meshedPod("shop", "pay-a", "pay")},
	}
	second := slice("shop", "cart", "grpc", 9090, ep("10.0.0.3", "cart-b", true))
	second.Name = "cart-def"
	in.EndpointSlices = append(in.EndpointSlices, second)
	in.Services[0].Spec.Ports[2].AppProtocol = ptr.To("tcp")
	whole := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, cla := range Translate(in).LoadAssignment {
		whole[cla.ClusterName] = cla
	}

	// Only cart's slices and one of its pods: pay's are not needed, cart-a is then not meshed.
	clas, problems := LoadAssignments(in.TrustDomain, &in.Services[0],
		[]*discoveryv1.EndpointSlice{&in.EndpointSlices[0], &in.EndpointSlices[2]}, []corev1.Pod{in.Pods[1]})
	if len(problems) > 0 || len(clas) != 3 {
		t.Fatalf("assignments %v, problems %v", clas, problems)
	}
	for _, cla := range clas {
		want := whole[cla.ClusterName]
		if cla.ClusterName == ClusterName("shop", "cart", 80) {
			if md := cla.Endpoints[0].LbEndpoints[0].Metadata.FilterMetadata["knit"].AsMap(); md["meshed"] != false || md["pod"] != "shop/cart-a" {
				t.Errorf("a pod that was not given is meshed: %v", md)
			}
			continue
		}
		if !proto.Equal(cla, want) {
			t.Errorf("%s: %v, the whole translation has %v", cla.ClusterName, cla, want)
		}
	}
	if got := EndpointPods(&in.EndpointSlices[0]); !slices.Equal(got, []string{"shop/cart-b", "shop/cart-a"}) {
		t.Errorf("pods of the slice: %v", got)
	}

	// With all of cart's pods, every assignment is the whole translation's.
	clas, _ = LoadAssignments(in.TrustDomain, &in.Services[0],
		[]*discoveryv1.EndpointSlice{&in.EndpointSlices[0], &in.EndpointSlices[2]}, in.Pods)
	for _, cla := range clas {
		if !proto.Equal(cla, whole[cla.ClusterName]) {
			t.Errorf("%s: %v, the whole translation has %v", cla.ClusterName, cla, whole[cla.ClusterName])
		}
	}
	external := service("shop", "ext", "", port("http", 80))
	external.Spec.Type = corev1.ServiceTypeExternalName
	if clas, _ := LoadAssignments(in.TrustDomain, &external, nil, nil); len(clas) != 0 {
		t.Errorf("an ExternalName Service has assignments: %v", clas)
	}
}

func TestRoutesWithoutARetryRetryConnectFailuresAndResets(t *testing.T) {
	svc := service("shop", "cart", "10.96.0.10", port("http", 80))
	plain := gwv1.HTTPRouteRule{Matches: []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/plain")},
		BackendRefs: []gwv1.HTTPBackendRef{backend("cart", 80, 1)}}
	timed := plain
	timed.Matches = []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/timed")}
	timed.Timeouts = &gwv1.HTTPRouteTimeouts{BackendRequest: ptr.To(gwv1.Duration("2s"))}
	explicit := plain
	explicit.Matches = []gwv1.HTTPRouteMatch{pathMatch(gwv1.PathMatchPathPrefix, "/explicit")}
	explicit.Retry = &gwv1.HTTPRouteRetry{Attempts: ptr.To(0)}

	// A Service without routes: its catch-all.
	res := Translate(Inputs{Services: []corev1.Service{svc}}).Resources("shop")
	validateAll(t, res)
	rp := routesOf(t, res, "cart.shop.svc.cluster.local:80")[0].GetRoute().GetRetryPolicy()
	if rp.GetRetryOn() != "connect-failure,refused-stream,reset" || rp.GetNumRetries().GetValue() != 2 {
		t.Fatalf("catch-all route retry policy: %v", rp)
	}

	res = Translate(Inputs{Services: []corev1.Service{svc},
		HTTPRoutes: []gwv1.HTTPRoute{httpRoute("shop", "r", 1, serviceParent("", "cart"), plain, timed, explicit)}}).Resources("shop")
	validateAll(t, res)
	byPath := map[string]*routev3.RetryPolicy{}
	for _, r := range routesOf(t, res, "cart.shop.svc.cluster.local:80") {
		byPath[r.GetMatch().GetPathSeparatedPrefix()] = r.GetRoute().GetRetryPolicy()
	}
	if rp := byPath["/plain"]; rp.GetRetryOn() != "connect-failure,refused-stream,reset" || rp.GetNumRetries().GetValue() != 2 {
		t.Errorf("a rule without retry: %v", rp)
	}
	if rp := byPath["/timed"]; rp.GetNumRetries().GetValue() != 2 || rp.GetPerTryTimeout().AsDuration() != 2*time.Second {
		t.Errorf("a rule with timeouts.backendRequest and without retry: %v", rp)
	}
	if rp := byPath["/explicit"]; rp.GetNumRetries() == nil || rp.GetNumRetries().GetValue() != 0 {
		t.Errorf("retry.attempts 0 must stay 0: %v", rp)
	}
}
