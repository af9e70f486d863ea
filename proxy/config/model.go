// Package config is knit-proxy's one internal model of what to serve.
//
// The shape follows xDS so that the xDS client (a later issue) fills the same
// structs a static file fills today: Listener ↔ envoy Listener, RouteConfig ↔
// RouteConfiguration, Cluster ↔ Cluster, Assignment ↔ ClusterLoadAssignment.
package config

import "time"

// Bootstrap is the whole proxy configuration.
type Bootstrap struct {
	Admin     Admin      `json:"admin"`
	Drain     Drain      `json:"drain,omitempty"`
	AccessLog AccessLog  `json:"accessLog,omitempty"`
	Tracing   Tracing    `json:"tracing,omitempty"`
	Listeners []Listener `json:"listeners"`
	// VirtualListeners are destinations (a Service's ClusterIP:port) that an
	// originalDestination outbound listener serves with routes and clusters
	// instead of forwarding to the destination itself; they bind no socket.
	VirtualListeners []VirtualListener `json:"virtualListeners,omitempty"`
	RouteConfigs     []RouteConfig     `json:"routeConfigs,omitempty"`
	Clusters         []Cluster         `json:"clusters"`
	Assignments      []Assignment      `json:"assignments,omitempty"`
	// Gateway marks a gateway proxy's config (knit-proxy run --gateway): its listeners all come
	// from the control plane, so it may have none while it waits for them. Never read from a file.
	Gateway bool `json:"-"`
}

// Admin is the port that serves /ready, /live, /metrics, /config and
// /debug/pprof/. Keep it on loopback: /config and pprof are for the operator
// of the proxy only.
type Admin struct {
	Address string `json:"address"`
	// ProbeAddress, when set, is a second admin port that serves only what
	// the kubelet and Prometheus need (/live, /ready, /metrics, and the
	// sidecar's /app-health/), so it may listen on the pod network.
	ProbeAddress string `json:"probeAddress,omitempty"`
	// NoMetrics: neither port serves /metrics (requests are still counted, for the
	// outlier detection and logs that read the same counters).
	NoMetrics bool `json:"noMetrics,omitempty"`
}

// Drain bounds how long in-flight work may finish after SIGTERM.
type Drain struct {
	// Delay is how long a draining proxy keeps accepting, with /ready failing and every HTTP/1
	// response carrying "Connection: close", before it stops accepting: the time load balancers
	// (kube-proxy's rules for a Service) take to stop sending it new connections. 0 (the
	// default) stops accepting at once.
	Delay Duration `json:"delay,omitempty"`
	// Timeout bounds the wait for in-flight work once the proxy has stopped accepting.
	Timeout Duration `json:"timeout,omitempty"`
}

// AccessLog is off by default; Path "stdout" or a file path.
type AccessLog struct {
	Enabled bool   `json:"enabled,omitempty"`
	Path    string `json:"path,omitempty"`
	// Format is "json" (default: one JSON object per line) or "text" (one
	// readable line per request).
	Format AccessLogFormat `json:"format,omitempty"`
}

// AccessLogFormat is how access log lines are written.
type AccessLogFormat string

const (
	AccessLogJSON AccessLogFormat = "json"
	AccessLogText AccessLogFormat = "text"
)

// Tracing turns on OTLP span export. Trace headers are always forwarded.
type Tracing struct {
	// OTLPEndpoint is host:port of an OTLP/gRPC collector (plaintext, like the
	// collector's default 4317 receiver); empty disables export.
	OTLPEndpoint string `json:"otlpEndpoint,omitempty"`
	// SamplingRatio is the share of new traces sampled, 0 to 1 (default 1); a
	// trace the caller sampled is always continued, whatever the ratio.
	SamplingRatio *float64 `json:"samplingRatio,omitempty"`
	ServiceName   string   `json:"serviceName,omitempty"`
}

// Direction tells metrics whether traffic enters or leaves the workload.
type Direction string

const (
	Inbound  Direction = "inbound"
	Outbound Direction = "outbound"
)

// ListenerProtocol fixes or detects what a listener speaks.
type ListenerProtocol string

const (
	ListenerAuto ListenerProtocol = "auto"
	ListenerHTTP ListenerProtocol = "http"
	ListenerTCP  ListenerProtocol = "tcp"
)

// Listener accepts connections on one address.
type Listener struct {
	Name      string           `json:"name"`
	Address   string           `json:"address"`
	Direction Direction        `json:"direction,omitempty"`
	Protocol  ListenerProtocol `json:"protocol,omitempty"`
	// DetectTimeout bounds how long the proxy waits for the client's first
	// bytes; after it the connection is treated as opaque TCP, so
	// server-speaks-first protocols (MySQL, SMTP) still work.
	DetectTimeout Duration `json:"detectTimeout,omitempty"`
	// RouteConfig names the RouteConfig used for HTTP traffic.
	RouteConfig string `json:"routeConfig,omitempty"`
	// TCPCluster receives opaque (non-HTTP) connections.
	TCPCluster string `json:"tcpCluster,omitempty"`
	// OriginalDestination forwards every connection to where it was going
	// before the capture rules redirected it (SO_ORIGINAL_DST), with HTTP
	// still detected and measured; routeConfig and tcpCluster are then not
	// used. This is the sidecar's mode until routes come from the control plane.
	OriginalDestination bool           `json:"originalDestination,omitempty"`
	TLS                 *ServerTLS     `json:"tls,omitempty"`
	Limits              ListenerLimits `json:"limits,omitempty"`
}

// VirtualListener is one destination IP:port served by the captured
// outbound listener (xDS: a Listener with bind_to_port false). A connection
// to it is detected as usual: HTTP goes through RouteConfig, anything else
// (or HTTP when RouteConfig is empty) to TCPCluster, balanced over its
// endpoints. A destination with no virtual listener keeps the
// original-destination passthrough.
type VirtualListener struct {
	Name string `json:"name"`
	// Address is the destination IP:port, e.g. a Service's ClusterIP:port.
	Address     string `json:"address"`
	RouteConfig string `json:"routeConfig,omitempty"`
	// TCPCluster receives opaque connections; any cluster protocol is
	// accepted, the bytes are forwarded as they are.
	TCPCluster string `json:"tcpCluster,omitempty"`
}

// ListenerLimits keep one client from holding resources forever.
type ListenerLimits struct {
	MaxHeaderBytes    int      `json:"maxHeaderBytes,omitempty"`
	ReadHeaderTimeout Duration `json:"readHeaderTimeout,omitempty"`
	IdleTimeout       Duration `json:"idleTimeout,omitempty"`
	// TCPIdleTimeout closes an opaque connection with no bytes in either direction.
	TCPIdleTimeout Duration `json:"tcpIdleTimeout,omitempty"`
	// MaxConnections caps open downstream connections; beyond it new ones
	// are closed at once. 0 means no limit.
	MaxConnections int `json:"maxConnections,omitempty"`
	// RequestBodyIdleTimeout bounds the wait for the next bytes of a request
	// body; a client that stalls longer gets 408 and its connection closed.
	RequestBodyIdleTimeout Duration `json:"requestBodyIdleTimeout,omitempty"`
	// ResponseWriteTimeout bounds one write to the client: a client that
	// reads nothing for this long is disconnected.
	ResponseWriteTimeout Duration `json:"responseWriteTimeout,omitempty"`
}

// ServerTLS terminates TLS on a listener (TLS 1.2 or later) with a certificate from files, or,
// on a gateway's HTTPS listener, with the certificates the control plane sent for the client's
// server name (SNI).
type ServerTLS struct {
	CertFile string   `json:"certFile,omitempty"`
	KeyFile  string   `json:"keyFile,omitempty"`
	ALPN     []string `json:"alpn,omitempty"`
	// SNI (from xDS only) chooses the certificates by the server name the client asks for: the
	// entry with an exact ServerName first, then the longest wildcard ("*.example.com" matches
	// any name under example.com), then the one without ServerNames. No match: the handshake
	// fails. CertFile and KeyFile are then not used.
	SNI []SNICertificates `json:"sni,omitempty"`
}

// SNICertificates are the certificates a listener presents to clients asking for ServerNames.
type SNICertificates struct {
	Name         string       `json:"name"`
	ServerNames  []string     `json:"serverNames,omitempty"`
	Certificates []PEMKeyPair `json:"certificates"`
}

// PEMKeyPair is a PEM certificate chain and its private key. The key is never written out
// (the admin port's /config shows the configuration without it).
type PEMKeyPair struct {
	CertificatePEM string `json:"certificatePEM"`
	KeyPEM         string `json:"-"`
}

// RouteConfig is an ordered list of virtual hosts (xDS RouteConfiguration).
type RouteConfig struct {
	Name         string        `json:"name"`
	VirtualHosts []VirtualHost `json:"virtualHosts"`
}

// VirtualHost groups routes by the request's authority.
type VirtualHost struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	Routes  []Route  `json:"routes"`
}

// Route matches requests and acts on them: exactly one of Clusters
// (forward, split by weight), Redirect or DirectResponse.
type Route struct {
	Name     string           `json:"name"`
	Match    RouteMatch       `json:"match,omitempty"`
	Clusters []WeightedTarget `json:"clusters,omitempty"`
	// Redirect answers with a redirect instead of forwarding; the proxy
	// never follows it.
	Redirect *Redirect `json:"redirect,omitempty"`
	// DirectResponse answers with a fixed status and body.
	DirectResponse *DirectResponse `json:"directResponse,omitempty"`
	// Rewrite changes the forwarded request's path or Host.
	Rewrite *URLRewrite `json:"rewrite,omitempty"`
	// RequestHeaders modify the request before it is forwarded,
	// ResponseHeaders the response before the client sees it.
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
	// Timeout bounds the whole request including retries. Unset means
	// DefaultRouteTimeout (15s); an explicit 0s means none (needed for long
	// gRPC streams and downloads).
	Timeout *Duration    `json:"timeout,omitempty"`
	Retry   *RetryPolicy `json:"retry,omitempty"`
	// Upgrades lists the HTTP/1.1 Upgrade protocols tunnelled to the
	// upstream (case-insensitive); unset means ["websocket"], [] none.
	// Other upgrade requests are refused with 403, except "h2c", which is
	// never tunnelled: its Upgrade header is dropped and the request is
	// forwarded as plain HTTP/1.1.
	Upgrades []string `json:"upgrades,omitempty"`
}

// RouteMatch: all given conditions must hold. Empty matches everything.
// At most one of Prefix, PathPrefix, Path and Regex.
type RouteMatch struct {
	// Prefix is a plain string prefix of the path ("/api" matches "/apis").
	Prefix string `json:"prefix,omitempty"`
	// PathPrefix matches whole path segments, as Gateway API's PathPrefix:
	// "/api" matches "/api", "/api/" and "/api/v1" but not "/apis"; a
	// trailing "/" is ignored.
	PathPrefix string `json:"pathPrefix,omitempty"`
	Path       string `json:"path,omitempty"`
	// Regex is an RE2 expression the whole path must match.
	Regex       string            `json:"regex,omitempty"`
	Methods     []string          `json:"methods,omitempty"`
	Headers     []HeaderMatch     `json:"headers,omitempty"`
	QueryParams []QueryParamMatch `json:"queryParams,omitempty"`
}

// HeaderMatch: exactly one of Exact, Prefix, Regex or Present. Names are
// case-insensitive; a header sent several times matches if any value does.
type HeaderMatch struct {
	Name   string `json:"name"`
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	// Regex is an RE2 expression the whole value must match.
	Regex   string `json:"regex,omitempty"`
	Present bool   `json:"present,omitempty"`
	Invert  bool   `json:"invert,omitempty"`
}

// QueryParamMatch: exactly one of Exact or Regex, on the first value of the
// query parameter Name (case-sensitive, as Gateway API says).
type QueryParamMatch struct {
	Name  string `json:"name"`
	Exact string `json:"exact,omitempty"`
	Regex string `json:"regex,omitempty"`
}

// WeightedTarget is one side of a traffic split. An empty Name is a backend
// that could not be resolved: its share of requests is answered with 500, as
// Gateway API requires.
type WeightedTarget struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight,omitempty"`
	// RequestHeaders and ResponseHeaders apply only to requests sent to
	// this target (Gateway API backendRef filters), after the route's.
	RequestHeaders  *HeaderModifier `json:"requestHeaders,omitempty"`
	ResponseHeaders *HeaderModifier `json:"responseHeaders,omitempty"`
}

// Redirect answers a request with a redirect (Gateway API RequestRedirect).
// Unset parts come from the request: scheme, host (without port) and path.
type Redirect struct {
	Scheme string `json:"scheme,omitempty"`
	Host   string `json:"host,omitempty"`
	// Port, when 0, is the request's port unless Scheme is set; a port that
	// is the scheme's well-known one (http 80, https 443) is left out.
	Port int `json:"port,omitempty"`
	// Path replaces the whole path; PrefixRewrite replaces the part matched
	// by the route's prefix or pathPrefix. At most one.
	Path          string `json:"path,omitempty"`
	PrefixRewrite string `json:"prefixRewrite,omitempty"`
	// Code is 301, 302 (default), 303, 307 or 308.
	Code int `json:"code,omitempty"`
}

// DirectResponse is a fixed answer (Status 200-599).
type DirectResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body,omitempty"`
}

// URLRewrite changes the forwarded request (Gateway API URLRewrite). At most
// one of PrefixRewrite (replaces the part matched by the route's prefix or
// pathPrefix), FullPath and Regex.
type URLRewrite struct {
	Host          string        `json:"host,omitempty"`
	PrefixRewrite string        `json:"prefixRewrite,omitempty"`
	FullPath      string        `json:"fullPath,omitempty"`
	Regex         *RegexRewrite `json:"regex,omitempty"`
}

// RegexRewrite replaces every match of the RE2 Pattern in the path with
// Substitution, where \1 (or ${1}) is the first capture group.
type RegexRewrite struct {
	Pattern      string `json:"pattern"`
	Substitution string `json:"substitution"`
}

// HeaderModifier adds, sets and removes headers, in that order. Add
// appends a value; Set replaces all values; names are case-insensitive.
type HeaderModifier struct {
	Add    []HeaderValue `json:"add,omitempty"`
	Set    []HeaderValue `json:"set,omitempty"`
	Remove []string      `json:"remove,omitempty"`
}

// HeaderValue is one header name and value.
type HeaderValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// RetryPolicy retries failed attempts, within the cluster's retry budget.
type RetryPolicy struct {
	// Attempts is the number of retries after the first try.
	Attempts int `json:"attempts"`
	// On (retryOn) lists conditions: "5xx", "gateway-error", "connect-failure",
	// "reset", "retriable-status-codes" (a response with one of StatusCodes).
	On []string `json:"retryOn,omitempty"`
	// StatusCodes are retried with retryOn "retriable-status-codes".
	StatusCodes []int `json:"statusCodes,omitempty"`
	// Methods that may be retried; default the idempotent ones.
	Methods []string `json:"methods,omitempty"`
	Backoff Backoff  `json:"backoff,omitempty"`
	// PerTryTimeout bounds each attempt, response body included (Gateway
	// API timeouts.backendRequest); an attempt past it is a 504 from that
	// endpoint, retried as one. 0: only the route's timeout.
	PerTryTimeout Duration `json:"perTryTimeout,omitempty"`
}

// Backoff is exponential with full jitter between Base and Max.
type Backoff struct {
	Base Duration `json:"base,omitempty"`
	Max  Duration `json:"max,omitempty"`
}

// ClusterProtocol is what the proxy speaks to the upstream.
type ClusterProtocol string

const (
	ClusterHTTP1 ClusterProtocol = "http1"
	ClusterHTTP2 ClusterProtocol = "http2"
	ClusterTCP   ClusterProtocol = "tcp"
)

// LBPolicy picks an endpoint per request.
type LBPolicy string

const (
	LBP2CEWMA    LBPolicy = "p2c_ewma"
	LBRoundRobin LBPolicy = "round_robin"
	LBWeighted   LBPolicy = "weighted"
)

// Cluster is a named group of upstream endpoints and how to talk to them.
type Cluster struct {
	Name           string          `json:"name"`
	Protocol       ClusterProtocol `json:"protocol,omitempty"`
	LBPolicy       LBPolicy        `json:"lbPolicy,omitempty"`
	ConnectTimeout Duration        `json:"connectTimeout,omitempty"`
	// MaxIdleConnsPerEndpoint sizes the per-endpoint connection pool.
	MaxIdleConnsPerEndpoint int `json:"maxIdleConnsPerEndpoint,omitempty"`
	// MaxConnectionsPerEndpoint caps open upstream connections per endpoint
	// (idle and busy); requests beyond it wait for a connection.
	MaxConnectionsPerEndpoint int `json:"maxConnectionsPerEndpoint,omitempty"`
	// IdleTimeout closes pooled connections unused for this long. It should
	// stay below the upstream's keep-alive timeout (Node.js: 5s).
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
	// MaxResponseHeaderBytes limits an upstream response's header block;
	// a larger one is a 502 to the client.
	MaxResponseHeaderBytes int               `json:"maxResponseHeaderBytes,omitempty"`
	TLS                    *UpstreamTLS      `json:"tls,omitempty"`
	OutlierDetection       *OutlierDetection `json:"outlierDetection,omitempty"`
	RetryBudget            RetryBudget       `json:"retryBudget,omitempty"`
	// Endpoints may be given inline; an Assignment with the same cluster name replaces them.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// UpstreamTLS originates TLS to the endpoints.
type UpstreamTLS struct {
	CAFile     string `json:"caFile,omitempty"`
	CertFile   string `json:"certFile,omitempty"`
	KeyFile    string `json:"keyFile,omitempty"`
	ServerName string `json:"serverName,omitempty"`
}

// OutlierDetection ejects endpoints that keep failing.
type OutlierDetection struct {
	Consecutive5xx             int      `json:"consecutive5xx,omitempty"`
	ConsecutiveConnectFailures int      `json:"consecutiveConnectFailures,omitempty"`
	BaseEjectionTime           Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionTime            Duration `json:"maxEjectionTime,omitempty"`
	MaxEjectionPercent         int      `json:"maxEjectionPercent,omitempty"`
}

// RetryBudget caps retries at Ratio of requests, but always allows MinPerSecond.
type RetryBudget struct {
	Ratio        float64 `json:"ratio,omitempty"`
	MinPerSecond float64 `json:"minPerSecond,omitempty"`
}

// Assignment is the endpoints of one cluster (xDS ClusterLoadAssignment).
type Assignment struct {
	Cluster   string     `json:"cluster"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one upstream address.
type Endpoint struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight,omitempty"`
	// Health decides whether the endpoint takes traffic: healthy (the
	// default) ones do; draining ones only when no endpoint of the cluster is
	// healthy; unhealthy ones never.
	Health EndpointHealth `json:"health,omitempty"`
	// Meshed: the endpoint's pod runs a knit-proxy sidecar; Identity is its
	// SPIFFE ID. A sidecar with a workload identity reaches a meshed endpoint
	// over mutual TLS and accepts only a peer certificate for Identity.
	Meshed   bool   `json:"meshed,omitempty"`
	Identity string `json:"identity,omitempty"`
}

// EndpointHealth is an endpoint's health as the control plane sees it.
type EndpointHealth string

const (
	EndpointHealthy   EndpointHealth = "healthy"
	EndpointUnhealthy EndpointHealth = "unhealthy"
	EndpointDraining  EndpointHealth = "draining"
)

// RouteTimeout is the route's timeout after defaults: unset means
// DefaultRouteTimeout, an explicit 0 means none.
func (r *Route) RouteTimeout() time.Duration {
	if r.Timeout == nil {
		return DefaultRouteTimeout
	}
	return r.Timeout.D()
}
