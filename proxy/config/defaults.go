package config

import "time"

// Defaults chosen for a sidecar: short detection so server-first protocols
// are not delayed long, bounded headers, idle connections reaped.
const (
	DefaultDrainTimeout       = 20 * time.Second
	DefaultDetectTimeout      = 500 * time.Millisecond
	DefaultMaxHeaderBytes     = 64 << 10
	DefaultReadHeaderTimeout  = 10 * time.Second
	DefaultIdleTimeout        = 90 * time.Second
	DefaultTCPIdleTimeout     = time.Hour
	DefaultConnectTimeout     = 2 * time.Second
	DefaultMaxIdlePerEndpoint = 1024
	// DefaultMaxConnsPerEndpoint keeps one busy client (an HTTP/2
	// connection may carry 1000 streams) from opening as many upstream
	// connections as it has requests.
	DefaultMaxConnsPerEndpoint = 256
	// DefaultUpstreamIdleTimeout is below common server keep-alive timeouts
	// (Node.js 5s; nginx, Apache, Go 60-90s), so the proxy closes an idle
	// connection before the server does and never races the server's close.
	DefaultUpstreamIdleTimeout    = 4 * time.Second
	DefaultMaxResponseHeaderBytes = 64 << 10
	DefaultRouteTimeout           = 15 * time.Second
	DefaultRequestBodyIdleTimeout = 30 * time.Second
	DefaultResponseWriteTimeout   = 30 * time.Second
	DefaultBackoffBase            = 25 * time.Millisecond
	DefaultBackoffMax             = 250 * time.Millisecond
	DefaultBudgetRatio            = 0.2
	DefaultBudgetMinPerSecond     = 10
	DefaultBaseEjection           = 30 * time.Second
	DefaultMaxEjection            = 5 * time.Minute
	DefaultMaxEjectionPercent     = 50
)

// SetDefaults fills unset fields in place.
func (b *Bootstrap) SetDefaults() {
	if b.Drain.Timeout == 0 {
		b.Drain.Timeout = Duration(DefaultDrainTimeout)
	}
	if b.AccessLog.Enabled && b.AccessLog.Path == "" {
		b.AccessLog.Path = "stdout"
	}
	if b.AccessLog.Format == "" {
		b.AccessLog.Format = AccessLogJSON
	}
	if b.Tracing.OTLPEndpoint != "" {
		if b.Tracing.SamplingRatio == nil {
			one := 1.0
			b.Tracing.SamplingRatio = &one
		}
		if b.Tracing.ServiceName == "" {
			b.Tracing.ServiceName = "knit-proxy"
		}
	}
	for i := range b.Listeners {
		l := &b.Listeners[i]
		if l.Direction == "" {
			l.Direction = Inbound
		}
		if l.Protocol == "" {
			l.Protocol = ListenerAuto
		}
		if l.DetectTimeout == 0 {
			l.DetectTimeout = Duration(DefaultDetectTimeout)
		}
		if l.Limits.MaxHeaderBytes == 0 {
			l.Limits.MaxHeaderBytes = DefaultMaxHeaderBytes
		}
		if l.Limits.ReadHeaderTimeout == 0 {
			l.Limits.ReadHeaderTimeout = Duration(DefaultReadHeaderTimeout)
		}
		if l.Limits.IdleTimeout == 0 {
			l.Limits.IdleTimeout = Duration(DefaultIdleTimeout)
		}
		if l.Limits.RequestBodyIdleTimeout == 0 {
			l.Limits.RequestBodyIdleTimeout = Duration(DefaultRequestBodyIdleTimeout)
		}
		if l.Limits.ResponseWriteTimeout == 0 {
			l.Limits.ResponseWriteTimeout = Duration(DefaultResponseWriteTimeout)
		}
		if l.Limits.TCPIdleTimeout == 0 {
			l.Limits.TCPIdleTimeout = Duration(DefaultTCPIdleTimeout)
		}
		if l.TLS != nil && len(l.TLS.ALPN) == 0 {
			l.TLS.ALPN = []string{"h2", "http/1.1"}
		}
	}
	for i := range b.RouteConfigs {
		for j := range b.RouteConfigs[i].VirtualHosts {
			vh := &b.RouteConfigs[i].VirtualHosts[j]
			if len(vh.Domains) == 0 {
				vh.Domains = []string{"*"}
			}
			for k := range vh.Routes {
				r := &vh.Routes[k]
				if r.Timeout == nil {
					d := Duration(DefaultRouteTimeout)
					r.Timeout = &d
				}
				if r.Upgrades == nil {
					r.Upgrades = []string{"websocket"}
				}
				if r.Redirect != nil && r.Redirect.Code == 0 {
					r.Redirect.Code = 302
				}
				for c := range r.Clusters {
					if r.Clusters[c].Weight == 0 {
						r.Clusters[c].Weight = 1
					}
				}
				if r.Retry != nil {
					if len(r.Retry.On) == 0 {
						r.Retry.On = []string{"connect-failure", "reset", "gateway-error"}
					}
					if len(r.Retry.Methods) == 0 {
						r.Retry.Methods = []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
					}
					if r.Retry.Backoff.Base == 0 {
						r.Retry.Backoff.Base = Duration(DefaultBackoffBase)
					}
					if r.Retry.Backoff.Max == 0 {
						r.Retry.Backoff.Max = Duration(DefaultBackoffMax)
					}
				}
			}
		}
	}
	for i := range b.Clusters {
		c := &b.Clusters[i]
		if c.Protocol == "" {
			c.Protocol = ClusterHTTP1
		}
		if c.LBPolicy == "" {
			c.LBPolicy = LBP2CEWMA
		}
		if c.ConnectTimeout == 0 {
			c.ConnectTimeout = Duration(DefaultConnectTimeout)
		}
		if c.MaxIdleConnsPerEndpoint == 0 {
			c.MaxIdleConnsPerEndpoint = DefaultMaxIdlePerEndpoint
		}
		if c.MaxConnectionsPerEndpoint == 0 {
			c.MaxConnectionsPerEndpoint = DefaultMaxConnsPerEndpoint
		}
		if c.IdleTimeout == 0 {
			c.IdleTimeout = Duration(DefaultUpstreamIdleTimeout)
		}
		if c.MaxResponseHeaderBytes == 0 {
			c.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
		}
		if c.RetryBudget.Ratio == 0 && c.RetryBudget.MinPerSecond == 0 {
			c.RetryBudget = RetryBudget{Ratio: DefaultBudgetRatio, MinPerSecond: DefaultBudgetMinPerSecond}
		}
		if od := c.OutlierDetection; od != nil {
			if od.BaseEjectionTime == 0 {
				od.BaseEjectionTime = Duration(DefaultBaseEjection)
			}
			if od.MaxEjectionTime == 0 {
				od.MaxEjectionTime = max(Duration(DefaultMaxEjection), od.BaseEjectionTime)
			}
			if od.MaxEjectionPercent == 0 {
				od.MaxEjectionPercent = DefaultMaxEjectionPercent
			}
		}
		endpointDefaults(c.Endpoints)
	}
	for i := range b.Assignments {
		endpointDefaults(b.Assignments[i].Endpoints)
	}
}

func endpointDefaults(eps []Endpoint) {
	for j := range eps {
		if eps[j].Weight == 0 {
			eps[j].Weight = 1
		}
		if eps[j].Health == "" {
			eps[j].Health = EndpointHealthy
		}
	}
}

// EndpointsOf returns the endpoints of the cluster that take traffic (its
// Assignment if any, else inline ones): the healthy ones, or the draining
// ones when none is healthy (a terminating pod that still serves beats no
// pod); unhealthy endpoints never.
func (b *Bootstrap) EndpointsOf(cluster string) []Endpoint {
	for _, a := range b.Assignments {
		if a.Cluster == cluster {
			return routable(a.Endpoints)
		}
	}
	for _, c := range b.Clusters {
		if c.Name == cluster {
			return routable(c.Endpoints)
		}
	}
	return nil
}

func routable(eps []Endpoint) []Endpoint {
	all := true
	for _, e := range eps {
		if e.Health != "" && e.Health != EndpointHealthy {
			all = false
			break
		}
	}
	if all {
		return eps // the common case: no copy
	}
	var healthy, draining []Endpoint
	for _, e := range eps {
		switch e.Health {
		case "", EndpointHealthy:
			healthy = append(healthy, e)
		case EndpointDraining:
			draining = append(draining, e)
		}
	}
	if len(healthy) > 0 {
		return healthy
	}
	return draining
}
