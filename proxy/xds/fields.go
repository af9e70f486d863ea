package xds

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// read lists, per Envoy message, the fields knit-proxy reads: exactly the
// subset controlplane/xds/CONTRACT.md names (plus stat_prefix, which the
// filters' own validation requires, resource_api_version, which only says
// "v3", and a filter chain's name, which only names it). Any other field that is set is refused by name, so a control
// plane never believes the proxy does something it ignores. Messages not
// listed here (Duration, UInt32Value, Struct, Any) are leaves: Any payloads
// are decoded and checked where they are read.
var read = map[protoreflect.FullName]map[protoreflect.Name]bool{
	"envoy.config.cluster.v3.Cluster": set("name", "type", "eds_cluster_config", "connect_timeout", "lb_policy",
		"outlier_detection", "typed_extension_protocol_options"),
	"envoy.config.cluster.v3.Cluster.EdsClusterConfig": set("eds_config", "service_name"),
	"envoy.config.core.v3.ConfigSource":                set("ads", "resource_api_version"),
	"envoy.config.core.v3.AggregatedConfigSource":      set(),
	"envoy.config.cluster.v3.OutlierDetection": set("consecutive_5xx", "consecutive_gateway_failure",
		"base_ejection_time", "max_ejection_time", "max_ejection_percent"),
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                            set("explicit_http_config"),
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig":         set("http_protocol_options", "http2_protocol_options"),
	"envoy.config.core.v3.Http1ProtocolOptions":                                         set(),
	"envoy.config.core.v3.Http2ProtocolOptions":                                         set(),
	"envoy.config.endpoint.v3.ClusterLoadAssignment":                                    set("cluster_name", "endpoints"),
	"envoy.config.endpoint.v3.LocalityLbEndpoints":                                      set("lb_endpoints"),
	"envoy.config.endpoint.v3.LbEndpoint":                                               set("endpoint", "health_status", "load_balancing_weight", "metadata"),
	"envoy.config.endpoint.v3.Endpoint":                                                 set("address"),
	"envoy.config.core.v3.Address":                                                      set("socket_address"),
	"envoy.config.core.v3.SocketAddress":                                                set("address", "port_value", "protocol"),
	"envoy.config.core.v3.Metadata":                                                     set("filter_metadata"),
	"envoy.config.listener.v3.Listener":                                                 set("name", "address", "bind_to_port", "traffic_direction", "filter_chains", "default_filter_chain"),
	"envoy.config.listener.v3.FilterChain":                                              set("name", "filter_chain_match", "filters", "transport_socket"),
	"envoy.config.listener.v3.FilterChainMatch":                                         set("application_protocols", "server_names"),
	"envoy.config.core.v3.TransportSocket":                                              set("name", "typed_config"),
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext":                    set("common_tls_context"),
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext":                        set("tls_params", "tls_certificates", "alpn_protocols"),
	"envoy.extensions.transport_sockets.tls.v3.TlsParameters":                           set("tls_minimum_protocol_version"),
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate":                          set("certificate_chain", "private_key"),
	"envoy.config.listener.v3.Filter":                                                   set("name", "typed_config"),
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": set("stat_prefix", "rds", "http_filters"),
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds":                   set("route_config_name", "config_source"),
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter":            set("name", "typed_config"),
	"envoy.extensions.filters.http.router.v3.Router":                                    set(),
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":                            set("stat_prefix", "cluster"),
	"envoy.config.route.v3.RouteConfiguration":                                          set("name", "virtual_hosts"),
	"envoy.config.route.v3.VirtualHost":                                                 set("name", "domains", "routes"),
	"envoy.config.route.v3.Route": set("name", "match", "route", "redirect", "direct_response",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"),
	"envoy.config.route.v3.RouteMatch":            set("prefix", "path", "path_separated_prefix", "safe_regex", "headers", "query_parameters"),
	"envoy.type.matcher.v3.RegexMatcher":          set("regex"),
	"envoy.config.route.v3.HeaderMatcher":         set("name", "string_match"),
	"envoy.config.route.v3.QueryParameterMatcher": set("name", "string_match"),
	"envoy.type.matcher.v3.StringMatcher":         set("exact", "safe_regex"),
	"envoy.config.route.v3.RouteAction": set("cluster", "weighted_clusters", "cluster_not_found_response_code", "timeout",
		"retry_policy", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal"),
	"envoy.config.route.v3.WeightedCluster": set("clusters"),
	"envoy.config.route.v3.WeightedCluster.ClusterWeight": set("name", "weight", "request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove"),
	"envoy.config.route.v3.RetryPolicy":              set("retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "retry_back_off"),
	"envoy.config.route.v3.RetryPolicy.RetryBackOff": set("base_interval", "max_interval"),
	"envoy.type.matcher.v3.RegexMatchAndSubstitute":  set("pattern", "substitution"),
	"envoy.config.route.v3.RedirectAction": set("scheme_redirect", "host_redirect", "port_redirect", "path_redirect",
		"prefix_rewrite", "response_code"),
	"envoy.config.route.v3.DirectResponseAction": set("status", "body"),
	"envoy.config.core.v3.DataSource":            set("inline_string"),
	"envoy.config.core.v3.HeaderValueOption":     set("header", "append_action"),
	"envoy.config.core.v3.HeaderValue":           set("key", "value"),
}

func set(names ...protoreflect.Name) map[protoreflect.Name]bool {
	m := make(map[protoreflect.Name]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkFields refuses the first field set in m (or below it) that
// knit-proxy does not read, naming it by its path from the resource.
func checkFields(m protoreflect.Message, path string) error {
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("%s: has fields this proxy's Envoy API version does not know", orRoot(path))
	}
	allowed, listed := read[m.Descriptor().FullName()]
	if !listed {
		return nil
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ { // in declaration order: the same error every time
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := join(path, string(fd.Name()))
		if !allowed[fd.Name()] {
			return fmt.Errorf("%s: not read by knit-proxy (see controlplane/xds/CONTRACT.md)", p)
		}
		v := m.Get(fd)
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				if err := checkFields(l.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j)); err != nil {
					return err
				}
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			var err error
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = checkFields(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()))
				return err == nil
			})
			if err != nil {
				return err
			}
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			if err := checkFields(v.Message(), p); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orRoot(path string) string {
	if path == "" {
		return "(resource)"
	}
	return path
}
