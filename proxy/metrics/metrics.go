// Package metrics defines the proxy's Prometheus golden signals. Label
// children are bound once per route and upstream so the request path does no
// label hashing for the common series.
package metrics

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/knit-mesh/knit/internal/buildinfo"
)

// Metrics owns one registry; tests create their own, so nothing is global.
type Metrics struct {
	Registry *prometheus.Registry

	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	budgetSpent *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	failures    *prometheus.CounterVec
	tcpOpened   *prometheus.CounterVec
	tcpClosed   *prometheus.CounterVec
	tcpBytes    *prometheus.CounterVec
	Reloads     *prometheus.CounterVec

	mu     sync.Mutex
	routes map[routeKey]*Route
}

type routeKey struct{ direction, route, upstream string }

var base = []string{"direction", "route", "upstream"}

// New registers every metric, plus Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_requests_total",
			Help: "HTTP and gRPC requests by response code, gRPC status and success or failure.",
		}, append(base, "code", "grpc_status", "classification")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "knit_request_duration_seconds",
			Help:    "Time from receiving request headers to the end of the response.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, base),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_retries_total", Help: "Retried attempts.",
		}, base),
		budgetSpent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_retry_budget_exhausted_total", Help: "Retries refused because the retry budget was spent.",
		}, base),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_outlier_ejections_total", Help: "Endpoints ejected by outlier detection.",
		}, base),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_request_failures_total",
			Help: "Requests that failed after the response started or for a reason the status does not tell: " +
				"upstream_reset (the upstream body broke; the client saw a reset), upstream_headers_too_large, " +
				"route_timeout, client_disconnect, request_body_timeout, bad_request_body; to meshed endpoints " +
				"peer_identity_mismatch, untrusted_peer, mtls_handshake_failed, no_workload_certificate.",
		}, append(base, "reason")),
		tcpOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_tcp_connections_opened_total", Help: "Opaque TCP connections proxied.",
		}, base),
		tcpClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_tcp_connections_closed_total", Help: "Opaque TCP connections closed.",
		}, base),
		tcpBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_tcp_bytes_total", Help: "Opaque TCP bytes; flow=received is from the client, sent is to it.",
		}, append(base, "flow")),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_config_reloads_total", Help: "Config reloads by result.",
		}, []string{"result"}),
		routes: map[routeKey]*Route{},
	}
	m.Registry.MustRegister(m.requests, m.latency, m.retries, m.budgetSpent, m.ejections, m.failures,
		m.tcpOpened, m.tcpClosed, m.tcpBytes, m.Reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The release the proxy was built as, as a constant series (the Prometheus build_info idiom).
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "knit_build_info", Help: "Always 1; the version label is the mesh release of this knit-proxy.",
		ConstLabels: prometheus.Labels{"version": buildinfo.Version},
	})
	buildInfo.Set(1)
	m.Registry.MustRegister(buildInfo)
	return m
}

// Route is the bound metric children of one direction, route and upstream.
type Route struct {
	m                    *Metrics
	labels               routeKey
	Latency              prometheus.Observer
	Retries, BudgetSpent prometheus.Counter
	Ejections            prometheus.Counter
	TCPOpened, TCPClosed prometheus.Counter
	TCPReceived, TCPSent prometheus.Counter
	codes                sync.Map // codeKey -> prometheus.Counter
}

type codeKey struct {
	code int
	grpc int // -1 when not gRPC
}

// For returns the (cached) children for the labels.
func (m *Metrics) For(direction, route, upstream string) *Route {
	k := routeKey{direction, route, upstream}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.routes[k]; r != nil {
		return r
	}
	r := &Route{
		m: m, labels: k,
		Latency:     m.latency.WithLabelValues(direction, route, upstream),
		Retries:     m.retries.WithLabelValues(direction, route, upstream),
		BudgetSpent: m.budgetSpent.WithLabelValues(direction, route, upstream),
		Ejections:   m.ejections.WithLabelValues(direction, route, upstream),
		TCPOpened:   m.tcpOpened.WithLabelValues(direction, route, upstream),
		TCPClosed:   m.tcpClosed.WithLabelValues(direction, route, upstream),
		TCPReceived: m.tcpBytes.WithLabelValues(direction, route, upstream, "received"),
		TCPSent:     m.tcpBytes.WithLabelValues(direction, route, upstream, "sent"),
	}
	m.routes[k] = r
	return r
}

// Failure classifies like Linkerd: 5xx, or any non-OK gRPC status.
func Failure(code, grpcStatus int) bool {
	return code >= 500 || code == 0 || grpcStatus > 0
}

// Request counts one finished request. grpcStatus is -1 for non-gRPC.
func (r *Route) Request(code, grpcStatus int) {
	k := codeKey{code, grpcStatus}
	if c, ok := r.codes.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	class := "success"
	if Failure(code, grpcStatus) {
		class = "failure"
	}
	g := ""
	if grpcStatus >= 0 {
		g = strconv.Itoa(grpcStatus)
	}
	c := r.m.requests.WithLabelValues(r.labels.direction, r.labels.route, r.labels.upstream, strconv.Itoa(code), g, class)
	r.codes.Store(k, c)
	c.Inc()
}

// Failed counts one finished request as a failure whatever its status (a
// response cut short after a 200 was sent is still a failure), with the reason.
func (r *Route) Failed(code, grpcStatus int, reason string) {
	g := ""
	if grpcStatus >= 0 {
		g = strconv.Itoa(grpcStatus)
	}
	l := r.labels
	r.m.requests.WithLabelValues(l.direction, l.route, l.upstream, strconv.Itoa(code), g, "failure").Inc()
	r.m.failures.WithLabelValues(l.direction, l.route, l.upstream, reason).Inc()
}
