package xds

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/knit-mesh/knit/proxy/config"
)

func testBase(t testing.TB) *config.Bootstrap {
	b, err := config.Parse([]byte(`
listeners:
- {name: outbound, address: "127.0.0.1:15001", direction: outbound, originalDestination: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func str(exact string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: exact}}
}

func re(expr string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: expr}}}
}

func TestTranslateReadsTheContractsRouteSubset(t *testing.T) {
	h2 := edsCluster("outbound|9090||grpc.shop.svc.cluster.local")
	opts, _ := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})
	h2.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: opts}
	h2.OutlierDetection = &clusterv3.OutlierDetection{ConsecutiveGatewayFailure: wrapperspb.UInt32(3), BaseEjectionTime: durationpb.New(time.Second)}

	rc := &routev3.RouteConfiguration{Name: routeName, VirtualHosts: []*routev3.VirtualHost{{Name: routeName, Domains: []string{"*"}, Routes: []*routev3.Route{
		{
			Name: "split",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"},
				Headers: []*routev3.HeaderMatcher{
					{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: str("GET")}},
					{Name: "x-env", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: re("can.*")}},
				},
				QueryParameters: []*routev3.QueryParameterMatcher{{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: str("2")}}},
			},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
					{Name: clusterA, Weight: wrapperspb.UInt32(90), // a backendRef's own filters
						RequestHeadersToAdd:     []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-backend", Value: "a"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
						RequestHeadersToRemove:  []string{"x-other"},
						ResponseHeadersToAdd:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-from", Value: "a"}}},
						ResponseHeadersToRemove: []string{"x-internal"}},
					{Name: "outbound|80||missing.shop.svc.cluster.local", Weight: wrapperspb.UInt32(10)},
					{Name: clusterA, Weight: wrapperspb.UInt32(0)},
				}}},
				Timeout:              durationpb.New(3 * time.Second),
				RetryPolicy:          &routev3.RetryPolicy{RetryOn: "5xx,retriable-status-codes", NumRetries: wrapperspb.UInt32(2), RetriableStatusCodes: []uint32{409}},
				PrefixRewrite:        "/v2",
				HostRewriteSpecifier: &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "api.internal"},
			}},
			RequestHeadersToAdd: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-add", Value: "1"}},
				{Header: &corev3.HeaderValue{Key: "x-set", Value: "2"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
			},
			RequestHeadersToRemove:  []string{"x-drop"},
			ResponseHeadersToRemove: []string{"server"},
		},
		{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/old/.*"}}},
			Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"}, HostRedirect: "new.example", PortRedirect: 8443,
				PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}, ResponseCode: routev3.RedirectAction_PERMANENT_REDIRECT}},
		},
		{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/full"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: h2.GetName()},
				RegexRewrite: &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/.*$"}, Substitution: "/replaced"}}},
		},
		{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}},
		},
	}}}}
	res := NewResources()
	res.Clusters[clusterA] = edsCluster(clusterA)
	res.Clusters[h2.GetName()] = h2
	res.Endpoints[clusterA] = assignment(clusterA, "10.1.0.7:8080")
	res.Listeners["l"] = httpListener(t, vip, 80, routeName, clusterA)
	res.Routes[routeName] = rc
	for name, m := range map[string]proto.Message{"cluster": h2, "route": rc} {
		if err := checkFields(m.ProtoReflect(), ""); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	b, err := Translate(testBase(t), res)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.VirtualListeners; len(got) != 1 || got[0].Address != "10.96.0.10:80" || got[0].RouteConfig != routeName || got[0].TCPCluster != clusterA {
		t.Fatalf("virtual listeners: %+v", got)
	}
	byName := map[string]config.Cluster{}
	for _, c := range b.Clusters {
		byName[c.Name] = c
	}
	if c := byName[h2.GetName()]; c.Protocol != config.ClusterHTTP2 || c.OutlierDetection.ConsecutiveConnectFailures != 3 || c.OutlierDetection.Consecutive5xx != 5 {
		t.Fatalf("h2 cluster: %+v %+v", c, c.OutlierDetection)
	}
	if c := byName[clusterA]; c.Protocol != config.ClusterHTTP1 || c.LBPolicy != config.LBP2CEWMA || c.ConnectTimeout.D() != time.Second {
		t.Fatalf("cluster: %+v", c)
	}
	if eps := b.EndpointsOf(clusterA); len(eps) != 1 || !eps[0].Meshed || eps[0].Identity != "spiffe://cluster.local/ns/shop/sa/web" {
		t.Fatalf("endpoints: %+v", eps)
	}
	routes := b.RouteConfigs[0].VirtualHosts[0].Routes
	timeout := config.Duration(3 * time.Second)
	want := config.Route{
		Name: "split",
		Match: config.RouteMatch{PathPrefix: "/api", Methods: []string{"GET"},
			Headers:     []config.HeaderMatch{{Name: "x-env", Regex: "can.*"}},
			QueryParams: []config.QueryParamMatch{{Name: "v", Exact: "2"}}},
		Clusters: []config.WeightedTarget{{Name: clusterA, Weight: 90,
			RequestHeaders:  &config.HeaderModifier{Set: []config.HeaderValue{{Name: "x-backend", Value: "a"}}, Remove: []string{"x-other"}},
			ResponseHeaders: &config.HeaderModifier{Add: []config.HeaderValue{{Name: "x-from", Value: "a"}}, Remove: []string{"x-internal"}}},
			{Name: "", Weight: 10}},
		Timeout: &timeout,
		Retry: &config.RetryPolicy{Attempts: 2, On: []string{"5xx", "retriable-status-codes"}, StatusCodes: []int{409},
			Methods: []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"},
			Backoff: config.Backoff{Base: config.Duration(config.DefaultBackoffBase), Max: config.Duration(config.DefaultBackoffMax)}},
		Rewrite:         &config.URLRewrite{PrefixRewrite: "/v2", Host: "api.internal"},
		RequestHeaders:  &config.HeaderModifier{Add: []config.HeaderValue{{Name: "x-add", Value: "1"}}, Set: []config.HeaderValue{{Name: "x-set", Value: "2"}}, Remove: []string{"x-drop"}},
		ResponseHeaders: &config.HeaderModifier{Remove: []string{"server"}},
		Upgrades:        []string{"websocket"},
	}
	if d := cmp.Diff(want, routes[0]); d != "" {
		t.Errorf("route 0 (-want +got):\n%s", d)
	}
	if rd := routes[1].Redirect; rd == nil || *rd != (config.Redirect{Scheme: "https", Host: "new.example", Port: 8443, Path: "/new", Code: 308}) || routes[1].Match.Regex != "/old/.*" || routes[1].Name != routeName+"/1" {
		t.Errorf("route 1: %+v %+v", routes[1], routes[1].Redirect)
	}
	if rw := routes[2].Rewrite; rw == nil || rw.Regex == nil || rw.Regex.Substitution != "/replaced" || routes[2].Match.Path != "/full" {
		t.Errorf("route 2: %+v", routes[2])
	}
	if dr := routes[3].DirectResponse; dr == nil || dr.Status != 500 || routes[3].Match.Prefix != "/" {
		t.Errorf("route 3: %+v", routes[3])
	}
}

func TestTranslateRefusesWhatItDoesNotReadNamingTheField(t *testing.T) {
	withTLS := edsCluster(clusterA)
	withTLS.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls"}
	static := edsCluster(clusterA)
	static.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	ring := edsCluster(clusterA)
	ring.LbPolicy = clusterv3.Cluster_RING_HASH
	bound := httpListener(t, vip, 80, routeName, clusterA)
	bound.BindToPort = nil
	badRegex := routeTo(routeName, clusterA)
	badRegex.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(?<=x)"}}
	inverted := routeTo(routeName, clusterA)
	inverted.VirtualHosts[0].Routes[0].Match.Headers = []*routev3.HeaderMatcher{{Name: "x", InvertMatch: true,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: str("a")}}}
	ignoreCase := routeTo(routeName, clusterA)
	ignoreCase.VirtualHosts[0].Routes[0].Match.QueryParameters = []*routev3.QueryParameterMatcher{{Name: "q",
		QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "a"}, IgnoreCase: true}}}}
	unhealthyKind := assignment(clusterA, "10.1.0.7:8080")
	unhealthyKind.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_DEGRADED
	badRetry := routeTo(routeName, clusterA)
	badRetry.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,cancelled"}

	for _, tc := range []struct {
		name string
		mod  func(*Resources)
		want string
	}{
		{"transport socket", func(r *Resources) { r.Clusters[clusterA] = withTLS }, `Cluster "` + clusterA + `": transport_socket: not read by knit-proxy`},
		{"static cluster", func(r *Resources) { r.Clusters[clusterA] = static }, "type: STATIC is not read"},
		{"ring hash", func(r *Resources) { r.Clusters[clusterA] = ring }, "lb_policy: RING_HASH is not read"},
		{"bound listener", func(r *Resources) { r.Listeners["l"] = bound }, "bind_to_port: must be false"},
		{"regex RE2 cannot compile", func(r *Resources) { r.Routes[routeName] = badRegex }, "match.regex: not an RE2 expression"},
		{"inverted header match", func(r *Resources) { r.Routes[routeName] = inverted }, "virtual_hosts[0].routes[0].match.headers[0].invert_match: not read by knit-proxy"},
		{"case-insensitive query match", func(r *Resources) { r.Routes[routeName] = ignoreCase }, "match.query_parameters[0].string_match.ignore_case: not read by knit-proxy"},
		{"degraded endpoint", func(r *Resources) { r.Endpoints[clusterA] = unhealthyKind }, "lb_endpoints[0].health_status: DEGRADED is not read"},
		{"unknown retry condition", func(r *Resources) { r.Routes[routeName] = badRetry }, `retry_on: "cancelled" is not read`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := NewResources()
			res.Clusters[clusterA] = edsCluster(clusterA)
			res.Endpoints[clusterA] = assignment(clusterA, "10.1.0.7:8080")
			res.Listeners["l"] = httpListener(t, vip, 80, routeName, clusterA)
			res.Routes[routeName] = routeTo(routeName, clusterA)
			tc.mod(res)
			err := checkAll(res)
			if err == nil {
				_, err = Translate(testBase(t), res)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

// checkAll runs the field check Decode runs on the wire.
func checkAll(r *Resources) error {
	for typeURL, msgs := range map[string][]proto.Message{
		ClusterType: values(r.Clusters), EndpointType: values(r.Endpoints), ListenerType: values(r.Listeners), RouteType: values(r.Routes),
	} {
		for _, m := range msgs {
			a, err := anypb.New(m)
			if err != nil {
				return err
			}
			if _, _, err := Decode(typeURL, a); err != nil {
				return err
			}
		}
	}
	return nil
}

func values[M proto.Message](m map[string]M) []proto.Message {
	var out []proto.Message
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestTranslateWaitsForRoutesAndClustersNotYetReceived(t *testing.T) {
	res := NewResources()
	res.Listeners["l"] = httpListener(t, vip, 80, routeName, clusterA)
	b, err := Translate(testBase(t), res)
	if err != nil || len(b.VirtualListeners) != 0 {
		t.Fatalf("a listener whose routes and cluster have not arrived is left out (passthrough meanwhile): %v %+v", err, b)
	}
	res.Clusters[clusterA] = edsCluster(clusterA)
	if b, err = Translate(testBase(t), res); err != nil || len(b.VirtualListeners) != 1 || b.VirtualListeners[0].RouteConfig != "" {
		t.Fatalf("with its cluster only, the listener serves TCP: %v %+v", err, b.VirtualListeners)
	}
	res.Endpoints["outbound|1||gone"] = &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|1||gone"}
	res.Routes[routeName] = routeTo(routeName, clusterA)
	if b, err = Translate(testBase(t), res); err != nil || b.VirtualListeners[0].RouteConfig != routeName || len(b.Assignments) != 0 {
		t.Fatalf("with its routes: %v %+v %+v", err, b.VirtualListeners, b.Assignments)
	}
}
