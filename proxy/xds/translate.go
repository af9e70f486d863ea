package xds

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/knit-mesh/knit/proxy/config"
)

// Resources is a view of the four resource types, by name.
type Resources struct {
	Clusters  map[string]*clusterv3.Cluster
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
	Listeners map[string]*listenerv3.Listener
	Routes    map[string]*routev3.RouteConfiguration
}

// NewResources returns an empty view.
func NewResources() *Resources {
	return &Resources{Clusters: map[string]*clusterv3.Cluster{}, Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
		Listeners: map[string]*listenerv3.Listener{}, Routes: map[string]*routev3.RouteConfiguration{}}
}

// Clone copies the maps (the messages are never modified, so they are shared).
func (r *Resources) Clone() *Resources {
	c := NewResources()
	for k, v := range r.Clusters {
		c.Clusters[k] = v
	}
	for k, v := range r.Endpoints {
		c.Endpoints[k] = v
	}
	for k, v := range r.Listeners {
		c.Listeners[k] = v
	}
	for k, v := range r.Routes {
		c.Routes[k] = v
	}
	return c
}

// Type URLs of the resources knit-proxy subscribes to.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// subscriptionOrder is the contract's order: CDS, EDS, LDS, RDS.
var subscriptionOrder = []string{ClusterType, EndpointType, ListenerType, RouteType}

const (
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	knitMetadataKey        = "knit"
)

// Decode unmarshals one resource of typeURL and refuses fields knit-proxy
// does not read. It returns the resource's name.
func Decode(typeURL string, res *anypb.Any) (proto.Message, string, error) {
	if res == nil {
		return nil, "", errors.New("empty resource")
	}
	if res.GetTypeUrl() != typeURL {
		return nil, "", fmt.Errorf("resource of type %q in a %s response", res.GetTypeUrl(), shortType(typeURL))
	}
	var m interface {
		proto.Message
		GetName() string
	}
	switch typeURL {
	case ClusterType:
		m = &clusterv3.Cluster{}
	case EndpointType:
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := proto.Unmarshal(res.GetValue(), cla); err != nil {
			return nil, "", fmt.Errorf("decode %s: %w", shortType(typeURL), err)
		}
		name := cla.GetClusterName()
		if err := checkFields(cla.ProtoReflect(), ""); err != nil {
			return nil, name, fmt.Errorf("%s %q: %w", shortType(typeURL), name, err)
		}
		return cla, name, nil
	case ListenerType:
		m = &listenerv3.Listener{}
	case RouteType:
		m = &routev3.RouteConfiguration{}
	default:
		return nil, "", fmt.Errorf("type %q is not one knit-proxy reads", typeURL)
	}
	if err := proto.Unmarshal(res.GetValue(), m); err != nil {
		return nil, "", fmt.Errorf("decode %s: %w", shortType(typeURL), err)
	}
	if err := checkFields(m.ProtoReflect(), ""); err != nil {
		return nil, m.GetName(), fmt.Errorf("%s %q: %w", shortType(typeURL), m.GetName(), err)
	}
	return m, m.GetName(), nil
}

func shortType(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

// Translate builds the whole proxy config: base (the sidecar's own
// listeners, admin port and access log) plus the clusters, endpoints,
// virtual listeners and routes of res; defaulted and validated. Resources
// that refer to ones not received yet (a listener before its routes) are
// left out until they arrive, as Envoy warms them; anything else wrong is
// an error naming the resource and field.
func Translate(base *config.Bootstrap, res *Resources) (*config.Bootstrap, error) {
	return translate(base, res, false)
}

// TranslateGateway is Translate for a gateway proxy: Listeners that ask to be bound
// (bind_to_port unset or true) become the proxy's own HTTP listeners (gateway.go).
func TranslateGateway(base *config.Bootstrap, res *Resources) (*config.Bootstrap, error) {
	return translate(base, res, true)
}

func translate(base *config.Bootstrap, res *Resources, gateway bool) (*config.Bootstrap, error) {
	b := *base
	b.Listeners = slices.Clone(base.Listeners)
	b.Clusters = slices.Clone(base.Clusters)
	b.Assignments = slices.Clone(base.Assignments)
	b.RouteConfigs = slices.Clone(base.RouteConfigs)
	b.VirtualListeners = slices.Clone(base.VirtualListeners)
	var errs []error
	fail := func(kind, name string, err error) {
		errs = append(errs, fmt.Errorf("%s %q: %w", kind, name, err))
	}

	for _, name := range sortedKeys(res.Clusters) {
		c, err := translateCluster(res.Clusters[name])
		if err != nil {
			fail("Cluster", name, err)
			continue
		}
		b.Clusters = append(b.Clusters, c)
	}
	known := map[string]bool{}
	for _, c := range b.Clusters {
		known[c.Name] = true
	}
	for _, name := range sortedKeys(res.Endpoints) {
		if !known[name] {
			continue // endpoints of a cluster not (or no longer) served: ignored, as Envoy does
		}
		a, err := translateAssignment(res.Endpoints[name])
		if err != nil {
			fail("ClusterLoadAssignment", name, err)
			continue
		}
		b.Assignments = append(b.Assignments, a)
	}
	routesUsed := map[string]bool{}
	for _, name := range sortedKeys(res.Listeners) {
		if gateway && bindsPort(res.Listeners[name]) {
			gl, err := translateGatewayListener(res.Listeners[name])
			switch {
			case err != nil:
				fail("Listener", name, err)
			case res.Routes[gl.RouteConfig] != nil: // else warming: bound once its routes arrive
				routesUsed[gl.RouteConfig] = true
				b.Listeners = append(b.Listeners, gl)
			}
			continue
		}
		vl, err := translateListener(res.Listeners[name])
		if err != nil {
			fail("Listener", name, err)
			continue
		}
		if vl.RouteConfig != "" && res.Routes[vl.RouteConfig] == nil {
			vl.RouteConfig = "" // warming: its routes have not arrived yet
		}
		if vl.TCPCluster != "" && !known[vl.TCPCluster] {
			vl.TCPCluster = "" // warming, or a Service port with no cluster yet
		}
		if vl.RouteConfig == "" && vl.TCPCluster == "" {
			continue // nothing to serve it with yet: passthrough meanwhile
		}
		if vl.RouteConfig != "" {
			routesUsed[vl.RouteConfig] = true
		}
		b.VirtualListeners = append(b.VirtualListeners, vl)
	}
	for _, name := range sortedKeys(res.Routes) {
		rc, err := translateRouteConfig(res.Routes[name], known)
		if err != nil {
			fail("RouteConfiguration", name, err)
			continue
		}
		if routesUsed[name] {
			b.RouteConfigs = append(b.RouteConfigs, rc)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	b.SetDefaults()
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("translated config is invalid: %w", err)
	}
	return &b, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func translateCluster(c *clusterv3.Cluster) (config.Cluster, error) {
	out := config.Cluster{Name: c.GetName(), Protocol: config.ClusterHTTP1}
	if c.GetName() == "" {
		return out, errors.New("name: is required")
	}
	if c.GetType() != clusterv3.Cluster_EDS {
		return out, fmt.Errorf("type: %s is not read; knit-proxy takes endpoints from EDS only", c.GetType())
	}
	if src := c.GetEdsClusterConfig().GetEdsConfig(); src.GetAds() == nil {
		return out, errors.New("eds_cluster_config.eds_config: must be ads{}")
	} else if err := checkAPIVersion(src, "eds_cluster_config.eds_config"); err != nil {
		return out, err
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" && n != c.GetName() {
		return out, fmt.Errorf("eds_cluster_config.service_name: %q differs from the cluster's name; knit-proxy looks endpoints up by cluster name", n)
	}
	if d := c.GetConnectTimeout(); d != nil {
		v, err := duration(d, "connect_timeout")
		if err != nil {
			return out, err
		}
		out.ConnectTimeout = config.Duration(v)
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_LEAST_REQUEST:
		out.LBPolicy = config.LBP2CEWMA
	case clusterv3.Cluster_ROUND_ROBIN: // also the proto's default
		out.LBPolicy = config.LBRoundRobin
	default:
		return out, fmt.Errorf("lb_policy: %s is not read; use LEAST_REQUEST or ROUND_ROBIN", c.GetLbPolicy())
	}
	if od := c.GetOutlierDetection(); od != nil {
		o := &config.OutlierDetection{Consecutive5xx: 5} // Envoy's default when outlier_detection is present
		if v := od.GetConsecutive_5Xx(); v != nil {
			o.Consecutive5xx = int(v.GetValue())
		}
		if v := od.GetConsecutiveGatewayFailure(); v != nil {
			o.ConsecutiveConnectFailures = int(v.GetValue())
		}
		for _, d := range []struct {
			in    *durationpb.Duration
			out   *config.Duration
			field string
		}{{od.GetBaseEjectionTime(), &o.BaseEjectionTime, "base_ejection_time"}, {od.GetMaxEjectionTime(), &o.MaxEjectionTime, "max_ejection_time"}} {
			if d.in != nil {
				v, err := duration(d.in, "outlier_detection."+d.field)
				if err != nil {
					return out, err
				}
				*d.out = config.Duration(v)
			}
		}
		if v := od.GetMaxEjectionPercent(); v != nil {
			if v.GetValue() > 100 {
				return out, fmt.Errorf("outlier_detection.max_ejection_percent: %d is more than 100", v.GetValue())
			}
			o.MaxEjectionPercent = int(v.GetValue())
		}
		out.OutlierDetection = o
	}
	for _, key := range sortedKeys(c.GetTypedExtensionProtocolOptions()) {
		f := fmt.Sprintf("typed_extension_protocol_options[%q]", key)
		if key != httpProtocolOptionsKey {
			return out, fmt.Errorf("%s: not read by knit-proxy", f)
		}
		opts := &httpv3.HttpProtocolOptions{}
		if err := unpack(c.GetTypedExtensionProtocolOptions()[key], opts, f); err != nil {
			return out, err
		}
		switch {
		case opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
			out.Protocol = config.ClusterHTTP2
		case opts.GetExplicitHttpConfig().GetHttpProtocolOptions() != nil:
			out.Protocol = config.ClusterHTTP1
		default:
			return out, fmt.Errorf("%s.explicit_http_config: set http_protocol_options or http2_protocol_options", f)
		}
	}
	return out, nil
}

func translateAssignment(cla *endpointv3.ClusterLoadAssignment) (config.Assignment, error) {
	a := config.Assignment{Cluster: cla.GetClusterName(), Endpoints: []config.Endpoint{}}
	for i, lle := range cla.GetEndpoints() {
		for j, lbe := range lle.GetLbEndpoints() {
			f := fmt.Sprintf("endpoints[%d].lb_endpoints[%d]", i, j)
			addr, err := socketAddress(lbe.GetEndpoint().GetAddress(), f+".endpoint.address")
			if err != nil {
				return a, err
			}
			e := config.Endpoint{Address: addr, Weight: 1}
			if w := lbe.GetLoadBalancingWeight(); w != nil {
				if w.GetValue() == 0 {
					return a, fmt.Errorf("%s.load_balancing_weight: must be at least 1", f)
				}
				e.Weight = w.GetValue()
			}
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
				e.Health = config.EndpointHealthy
			case corev3.HealthStatus_UNHEALTHY:
				e.Health = config.EndpointUnhealthy
			case corev3.HealthStatus_DRAINING:
				e.Health = config.EndpointDraining
			default:
				return a, fmt.Errorf("%s.health_status: %s is not read; use HEALTHY, UNHEALTHY or DRAINING", f, lbe.GetHealthStatus())
			}
			if err := endpointMetadata(lbe.GetMetadata(), &e, f+".metadata"); err != nil {
				return a, err
			}
			a.Endpoints = append(a.Endpoints, e)
		}
	}
	return a, nil
}

func endpointMetadata(md *corev3.Metadata, e *config.Endpoint, f string) error {
	for _, ns := range sortedKeys(md.GetFilterMetadata()) {
		if ns != knitMetadataKey {
			return fmt.Errorf("%s.filter_metadata[%q]: not read by knit-proxy", f, ns)
		}
		for _, k := range sortedKeys(md.GetFilterMetadata()[ns].GetFields()) {
			v := md.GetFilterMetadata()[ns].GetFields()[k]
			kf := fmt.Sprintf("%s.filter_metadata[%q].%s", f, ns, k)
			switch k {
			case "meshed":
				if _, ok := v.GetKind().(*structpb.Value_BoolValue); !ok {
					return fmt.Errorf("%s: must be a bool", kf)
				}
				e.Meshed = v.GetBoolValue()
			case "identity":
				if _, ok := v.GetKind().(*structpb.Value_StringValue); !ok {
					return fmt.Errorf("%s: must be a string", kf)
				}
				e.Identity = v.GetStringValue()
			case "pod":
				if _, ok := v.GetKind().(*structpb.Value_StringValue); !ok {
					return fmt.Errorf("%s: must be a string", kf)
				}
			default:
				return fmt.Errorf("%s: not read by knit-proxy", kf)
			}
		}
	}
	return nil
}

func socketAddress(a *corev3.Address, f string) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", fmt.Errorf("%s.socket_address: is required", f)
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return "", fmt.Errorf("%s.socket_address.address: %q is not an IP address", f, sa.GetAddress())
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", fmt.Errorf("%s.socket_address.protocol: only TCP is read", f)
	}
	port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	if !ok || port.PortValue == 0 || port.PortValue > 65535 {
		return "", fmt.Errorf("%s.socket_address.port_value: must be between 1 and 65535", f)
	}
	return net.JoinHostPort(ip.Unmap().String(), strconv.Itoa(int(port.PortValue))), nil
}

func translateListener(l *listenerv3.Listener) (config.VirtualListener, error) {
	vl := config.VirtualListener{Name: l.GetName()}
	if l.GetName() == "" {
		return vl, errors.New("name: is required")
	}
	addr, err := socketAddress(l.GetAddress(), "address")
	if err != nil {
		return vl, err
	}
	vl.Address = addr
	if b := l.GetBindToPort(); b == nil || b.GetValue() {
		return vl, errors.New("bind_to_port: must be false; knit-proxy binds only its captured listeners and serves these as virtual ones")
	}
	if d := l.GetTrafficDirection(); d != corev3.TrafficDirection_OUTBOUND && d != corev3.TrafficDirection_UNSPECIFIED {
		return vl, fmt.Errorf("traffic_direction: %s is not read; virtual listeners are OUTBOUND", d)
	}
	if len(l.GetFilterChains()) > 1 {
		return vl, errors.New("filter_chains: at most one (HTTP) filter chain is read")
	}
	for i, fc := range l.GetFilterChains() {
		f := fmt.Sprintf("filter_chains[%d]", i)
		for j, p := range fc.GetFilterChainMatch().GetApplicationProtocols() {
			if p != "http/1.1" && p != "h2c" && p != "h2" {
				return vl, fmt.Errorf("%s.filter_chain_match.application_protocols[%d]: %q is not read; knit-proxy's detection tells HTTP from other bytes", f, j, p)
			}
		}
		filter, err := onlyFilter(fc, f)
		if err != nil {
			return vl, err
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := unpack(filter.GetTypedConfig(), hcm, f+".filters[0].typed_config"); err != nil {
			return vl, err
		}
		if vl.RouteConfig, err = readHCM(hcm, f+".filters[0].typed_config"); err != nil {
			return vl, err
		}
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		filter, err := onlyFilter(dfc, "default_filter_chain")
		if err != nil {
			return vl, err
		}
		if dfc.GetFilterChainMatch() != nil {
			return vl, errors.New("default_filter_chain.filter_chain_match: not read by knit-proxy")
		}
		tp := &tcpv3.TcpProxy{}
		if err := unpack(filter.GetTypedConfig(), tp, "default_filter_chain.filters[0].typed_config"); err != nil {
			return vl, err
		}
		if tp.GetCluster() == "" {
			return vl, errors.New("default_filter_chain.filters[0].typed_config.cluster: is required")
		}
		vl.TCPCluster = tp.GetCluster()
	}
	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
		return vl, errors.New("filter_chains: a listener needs an HTTP filter chain or a default_filter_chain")
	}
	return vl, nil
}

func onlyFilter(fc *listenerv3.FilterChain, f string) (*listenerv3.Filter, error) {
	if len(fc.GetFilters()) != 1 {
		return nil, fmt.Errorf("%s.filters: exactly one filter is read, got %d", f, len(fc.GetFilters()))
	}
	return fc.GetFilters()[0], nil
}

func readHCM(hcm *hcmv3.HttpConnectionManager, f string) (string, error) {
	rds := hcm.GetRds()
	if rds == nil || rds.GetRouteConfigName() == "" {
		return "", fmt.Errorf("%s.rds.route_config_name: is required", f)
	}
	if rds.GetConfigSource().GetAds() == nil {
		return "", fmt.Errorf("%s.rds.config_source: must be ads{}", f)
	}
	if err := checkAPIVersion(rds.GetConfigSource(), f+".rds.config_source"); err != nil {
		return "", err
	}
	hf := hcm.GetHttpFilters()
	if len(hf) != 1 {
		return "", fmt.Errorf("%s.http_filters: exactly one filter (the router) is read, got %d", f, len(hf))
	}
	if hf[0].GetTypedConfig() == nil {
		return "", fmt.Errorf("%s.http_filters[0].typed_config: must be a Router", f)
	}
	if err := unpack(hf[0].GetTypedConfig(), &routerv3.Router{}, f+".http_filters[0].typed_config"); err != nil {
		return "", err
	}
	return rds.GetRouteConfigName(), nil
}

func checkAPIVersion(src *corev3.ConfigSource, f string) error {
	if v := src.GetResourceApiVersion(); v != corev3.ApiVersion_V3 && v != corev3.ApiVersion_AUTO {
		return fmt.Errorf("%s.resource_api_version: only V3 is read", f)
	}
	return nil
}

// unpack decodes an Any into m (whose type it must be) and checks its fields.
func unpack(a *anypb.Any, m proto.Message, f string) error {
	want := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
	if a.GetTypeUrl() != want {
		return fmt.Errorf("%s: type %q is not read here, want %q", f, a.GetTypeUrl(), want)
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	return checkFields(m.ProtoReflect(), f)
}

func translateRouteConfig(rc *routev3.RouteConfiguration, clusters map[string]bool) (config.RouteConfig, error) {
	out := config.RouteConfig{Name: rc.GetName()}
	if rc.GetName() == "" {
		return out, errors.New("name: is required")
	}
	for i, vh := range rc.GetVirtualHosts() {
		f := fmt.Sprintf("virtual_hosts[%d]", i)
		v := config.VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains()}
		for j, r := range vh.GetRoutes() {
			cr, err := translateRoute(r, clusters, fmt.Sprintf("%s.routes[%d]", f, j))
			if err != nil {
				return out, err
			}
			if cr.Name == "" {
				cr.Name = fmt.Sprintf("%s/%d", vh.GetName(), j)
			}
			v.Routes = append(v.Routes, cr)
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out, nil
}

func translateRoute(r *routev3.Route, clusters map[string]bool, f string) (config.Route, error) {
	out := config.Route{Name: r.GetName()}
	m := r.GetMatch()
	if m == nil {
		return out, fmt.Errorf("%s.match: is required", f)
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Match.Prefix = ps.Prefix
	case *routev3.RouteMatch_Path:
		out.Match.Path = ps.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		out.Match.PathPrefix = ps.PathSeparatedPrefix
	case *routev3.RouteMatch_SafeRegex:
		out.Match.Regex = ps.SafeRegex.GetRegex()
		if out.Match.Regex == "" {
			return out, fmt.Errorf("%s.match.safe_regex.regex: is required", f)
		}
	case nil:
		return out, fmt.Errorf("%s.match: needs prefix, path, path_separated_prefix or safe_regex", f)
	}
	for i, h := range m.GetHeaders() {
		hf := fmt.Sprintf("%s.match.headers[%d]", f, i)
		exact, regex, err := stringMatch(h.GetStringMatch(), hf+".string_match")
		if err != nil {
			return out, err
		}
		if strings.EqualFold(h.GetName(), ":method") {
			if regex != "" {
				return out, fmt.Errorf("%s.string_match.safe_regex: a :method match is exact", hf)
			}
			out.Match.Methods = append(out.Match.Methods, exact)
			continue
		}
		out.Match.Headers = append(out.Match.Headers, config.HeaderMatch{Name: h.GetName(), Exact: exact, Regex: regex})
	}
	for i, q := range m.GetQueryParameters() {
		exact, regex, err := stringMatch(q.GetStringMatch(), fmt.Sprintf("%s.match.query_parameters[%d].string_match", f, i))
		if err != nil {
			return out, err
		}
		out.Match.QueryParams = append(out.Match.QueryParams, config.QueryParamMatch{Name: q.GetName(), Exact: exact, Regex: regex})
	}

	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		if err := routeAction(a.Route, &out, clusters, f+".route"); err != nil {
			return out, err
		}
	case *routev3.Route_Redirect:
		rd, err := redirect(a.Redirect, f+".redirect")
		if err != nil {
			return out, err
		}
		out.Redirect = rd
	case *routev3.Route_DirectResponse:
		out.DirectResponse = &config.DirectResponse{Status: int(a.DirectResponse.GetStatus()),
			Body: a.DirectResponse.GetBody().GetInlineString()}
	default:
		return out, fmt.Errorf("%s: needs route, redirect or direct_response", f)
	}

	var err error
	if out.RequestHeaders, err = headerModifier(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove(), f+".request_headers_to_add"); err != nil {
		return out, err
	}
	if out.ResponseHeaders, err = headerModifier(r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove(), f+".response_headers_to_add"); err != nil {
		return out, err
	}
	return out, nil
}

func stringMatch(sm *matcherv3.StringMatcher, f string) (exact, regex string, err error) {
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return p.Exact, "", nil
	case *matcherv3.StringMatcher_SafeRegex:
		if p.SafeRegex.GetRegex() == "" {
			return "", "", fmt.Errorf("%s.safe_regex.regex: is required", f)
		}
		return "", p.SafeRegex.GetRegex(), nil
	}
	return "", "", fmt.Errorf("%s: needs exact or safe_regex", f)
}

func routeAction(ra *routev3.RouteAction, out *config.Route, clusters map[string]bool, f string) error {
	target := func(name string, weight uint32) config.WeightedTarget {
		if !clusters[name] {
			name = "" // unresolved: its share is answered with 500
		}
		return config.WeightedTarget{Name: name, Weight: weight}
	}
	switch cs := ra.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		out.Clusters = []config.WeightedTarget{target(cs.Cluster, 1)}
	case *routev3.RouteAction_WeightedClusters:
		for i, cw := range cs.WeightedClusters.GetClusters() {
			w := cw.GetWeight().GetValue()
			if w == 0 { // Gateway API: weight 0 takes no traffic
				continue
			}
			t := target(cw.GetName(), w)
			cf := fmt.Sprintf("%s.weighted_clusters.clusters[%d]", f, i)
			var err error
			if t.RequestHeaders, err = headerModifier(cw.GetRequestHeadersToAdd(), cw.GetRequestHeadersToRemove(), cf+".request_headers_to_add"); err != nil {
				return err
			}
			if t.ResponseHeaders, err = headerModifier(cw.GetResponseHeadersToAdd(), cw.GetResponseHeadersToRemove(), cf+".response_headers_to_add"); err != nil {
				return err
			}
			out.Clusters = append(out.Clusters, t)
		}
		if len(out.Clusters) == 0 { // Gateway API: all weights 0 is a 500
			out.Clusters = []config.WeightedTarget{{Name: "", Weight: 1}}
		}
	default:
		return fmt.Errorf("%s: needs cluster or weighted_clusters", f)
	}
	if ra.GetTimeout() != nil {
		d, err := duration(ra.GetTimeout(), f+".timeout")
		if err != nil {
			return err
		}
		cd := config.Duration(d)
		out.Timeout = &cd
	}
	if rp := ra.GetRetryPolicy(); rp != nil {
		retry := &config.RetryPolicy{Attempts: 1} // Envoy's num_retries default
		if n := rp.GetNumRetries(); n != nil {
			retry.Attempts = int(n.GetValue())
		}
		for _, on := range strings.Split(rp.GetRetryOn(), ",") {
			switch on = strings.TrimSpace(on); on {
			case "":
			case "5xx", "gateway-error", "connect-failure", "reset", "retriable-status-codes":
				retry.On = append(retry.On, on)
			case "refused-stream": // an HTTP/2 REFUSED_STREAM is a reset to knit-proxy
				if !slices.Contains(retry.On, "reset") {
					retry.On = append(retry.On, "reset")
				}
			default:
				return fmt.Errorf("%s.retry_policy.retry_on: %q is not read; use 5xx, gateway-error, connect-failure, reset, refused-stream or retriable-status-codes", f, on)
			}
		}
		if bo := rp.GetRetryBackOff(); bo != nil {
			base, err := duration(bo.GetBaseInterval(), f+".retry_policy.retry_back_off.base_interval")
			if err != nil {
				return err
			}
			maxD := 10 * base // Envoy's default max_interval
			if bo.GetMaxInterval() != nil {
				if maxD, err = duration(bo.GetMaxInterval(), f+".retry_policy.retry_back_off.max_interval"); err != nil {
					return err
				}
			}
			if base <= 0 || maxD < base {
				return fmt.Errorf("%s.retry_policy.retry_back_off: need 0 < base_interval <= max_interval", f)
			}
			retry.Backoff = config.Backoff{Base: config.Duration(base), Max: config.Duration(maxD)}
		}
		for _, c := range rp.GetRetriableStatusCodes() {
			retry.StatusCodes = append(retry.StatusCodes, int(c))
		}
		if rp.GetPerTryTimeout() != nil {
			d, err := duration(rp.GetPerTryTimeout(), f+".retry_policy.per_try_timeout")
			if err != nil {
				return err
			}
			retry.PerTryTimeout = config.Duration(d)
			// With no retry the one try is the request: its timeout.
			if retry.Attempts == 0 && d > 0 && (out.Timeout == nil || out.Timeout.D() == 0 || d < out.Timeout.D()) {
				cd := config.Duration(d)
				out.Timeout = &cd
			}
		}
		out.Retry = retry
	}
	rw := &config.URLRewrite{PrefixRewrite: ra.GetPrefixRewrite(), Host: ra.GetHostRewriteLiteral()}
	if rr := ra.GetRegexRewrite(); rr != nil {
		rw.Regex = &config.RegexRewrite{Pattern: rr.GetPattern().GetRegex(), Substitution: rr.GetSubstitution()}
	}
	if *rw != (config.URLRewrite{}) {
		out.Rewrite = rw
	}
	return nil
}

func redirect(rd *routev3.RedirectAction, f string) (*config.Redirect, error) {
	out := &config.Redirect{Scheme: rd.GetSchemeRedirect(), Host: rd.GetHostRedirect(), Port: int(rd.GetPortRedirect()),
		Path: rd.GetPathRedirect(), PrefixRewrite: rd.GetPrefixRewrite()}
	switch rd.GetResponseCode() {
	case routev3.RedirectAction_MOVED_PERMANENTLY: // also the proto's default
		out.Code = 301
	case routev3.RedirectAction_FOUND:
		out.Code = 302
	case routev3.RedirectAction_SEE_OTHER:
		out.Code = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		out.Code = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		out.Code = 308
	default:
		return nil, fmt.Errorf("%s.response_code: %s is not read", f, rd.GetResponseCode())
	}
	return out, nil
}

func headerModifier(add []*corev3.HeaderValueOption, remove []string, f string) (*config.HeaderModifier, error) {
	if len(add) == 0 && len(remove) == 0 {
		return nil, nil
	}
	m := &config.HeaderModifier{Remove: remove}
	for i, h := range add {
		hv := config.HeaderValue{Name: h.GetHeader().GetKey(), Value: h.GetHeader().GetValue()}
		switch h.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			m.Add = append(m.Add, hv)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			m.Set = append(m.Set, hv)
		default:
			return nil, fmt.Errorf("%s[%d].append_action: %s is not read; use APPEND_IF_EXISTS_OR_ADD or OVERWRITE_IF_EXISTS_OR_ADD", f, i, h.GetAppendAction())
		}
	}
	return m, nil
}

func duration(d *durationpb.Duration, f string) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%s: %w", f, err)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, fmt.Errorf("%s: must not be negative", f)
	}
	return v, nil
}
