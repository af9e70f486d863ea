// Package route matches a request to a route (virtual host by authority,
// then path, method and header matches in order) and splits traffic between
// the route's weighted clusters.
package route

import (
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// Table is one compiled RouteConfig.
type Table struct {
	Name   string
	vhosts []*vhost
}

type vhost struct {
	exact    map[string]bool
	suffixes []string // from "*.example.com" → ".example.com"
	prefixes []string // from "api.*" → "api."
	any      bool
	routes   []*Route
}

// Route is one compiled route.
type Route struct {
	Name    string
	match   matcher
	Targets []Target
	// Actions other than forwarding, and changes to the forwarded request;
	// nil when the route has none.
	Actions *Actions
	total   uint64
	Timeout time.Duration
	Retry   *Retry
	// Upgrades are the Upgrade protocols tunnelled for this route.
	Upgrades []string
}

// DefaultUpgrades is what a route allows when its config says nothing.
var DefaultUpgrades = []string{"websocket"}

// AllowsUpgrade reports whether requests asking to switch to proto (one
// token of an Upgrade header, "name" or "name/version") may be tunnelled.
func (rt *Route) AllowsUpgrade(proto string) bool {
	name, _, _ := strings.Cut(proto, "/")
	for _, u := range rt.Upgrades {
		if strings.EqualFold(u, name) {
			return true
		}
	}
	return false
}

// Target is one weighted cluster with its metric children per direction.
// Cluster is nil for a backend that could not be resolved (answered with
// 500) and for routes that answer themselves.
type Target struct {
	Cluster  *upstream.Cluster
	Weight   uint32
	Inbound  *metrics.Route
	Outbound *metrics.Route
	// RequestHeaders and ResponseHeaders modify only this target's traffic.
	RequestHeaders  *config.HeaderModifier
	ResponseHeaders *config.HeaderModifier
}

// Stats returns the metric children for the listener's direction.
func (t *Target) Stats(d config.Direction) *metrics.Route {
	if d == config.Outbound {
		return t.Outbound
	}
	return t.Inbound
}

// Retry is a compiled RetryPolicy.
type Retry struct {
	Attempts       int
	On5xx          bool
	OnGatewayError bool
	OnConnect      bool
	OnReset        bool
	// StatusCodes are retried responses (retryOn retriable-status-codes).
	StatusCodes []int
	methods     []string
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// PerTry bounds each attempt (0: only the route's timeout).
	PerTry time.Duration
}

// RetriesStatus says whether the policy retries a response with this status (a per-try timeout
// counts as a 504).
func (p *Retry) RetriesStatus(code int) bool {
	switch code {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if p.On5xx || p.OnGatewayError {
			return true
		}
	}
	return slices.Contains(p.StatusCodes, code) || p.On5xx && code >= 500
}

// Method reports whether requests with this method may be retried.
func (r *Retry) Method(m string) bool {
	for _, x := range r.methods {
		if x == m {
			return true
		}
	}
	return false
}

// Compile resolves cluster names against the runtime clusters.
func Compile(rc config.RouteConfig, clusters map[string]*upstream.Cluster, m *metrics.Metrics) *Table {
	t := &Table{Name: rc.Name}
	for _, vh := range rc.VirtualHosts {
		v := &vhost{exact: map[string]bool{}}
		for _, d := range vh.Domains {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				v.any = true
			case strings.HasPrefix(d, "*"):
				v.suffixes = append(v.suffixes, d[1:])
			case strings.HasSuffix(d, "*"):
				v.prefixes = append(v.prefixes, d[:len(d)-1])
			default:
				v.exact[d] = true
			}
		}
		for _, r := range vh.Routes {
			cr := &Route{
				Name: r.Name, match: compileMatch(r.Match), Timeout: r.RouteTimeout(),
				Upgrades: r.Upgrades, Actions: compileActions(r),
			}
			for _, wc := range r.Clusters {
				cr.Targets = append(cr.Targets, Target{
					Cluster:         clusters[wc.Name],
					Weight:          wc.Weight,
					RequestHeaders:  wc.RequestHeaders,
					ResponseHeaders: wc.ResponseHeaders,
					Inbound:         m.For(string(config.Inbound), r.Name, wc.Name),
					Outbound:        m.For(string(config.Outbound), r.Name, wc.Name),
				})
				cr.total += uint64(wc.Weight)
			}
			if len(r.Clusters) == 0 { // redirect or direct response: metrics without a cluster
				cr.Targets = []Target{{Weight: 1, Inbound: m.For(string(config.Inbound), r.Name, ""),
					Outbound: m.For(string(config.Outbound), r.Name, "")}}
				cr.total = 1
			}
			if p := r.Retry; p != nil && p.Attempts > 0 {
				rt := &Retry{Attempts: p.Attempts, methods: p.Methods,
					BackoffBase: p.Backoff.Base.D(), BackoffMax: p.Backoff.Max.D(), PerTry: p.PerTryTimeout.D()}
				for _, on := range p.On {
					switch on {
					case "5xx":
						rt.On5xx = true
					case "gateway-error":
						rt.OnGatewayError = true
					case "connect-failure":
						rt.OnConnect = true
					case "reset":
						rt.OnReset = true
					case "retriable-status-codes":
						rt.StatusCodes = p.StatusCodes
					}
				}
				cr.Retry = rt
			}
			v.routes = append(v.routes, cr)
		}
		t.vhosts = append(t.vhosts, v)
	}
	return t
}

// Match returns the first route that matches, or nil.
func (t *Table) Match(r *http.Request) *Route {
	v := t.vhostFor(r.Host)
	if v == nil {
		return nil
	}
	for _, rt := range v.routes {
		if rt.matches(r) {
			return rt
		}
	}
	return nil
}

func (t *Table) vhostFor(hostport string) *vhost {
	if len(t.vhosts) == 1 && t.vhosts[0].any {
		return t.vhosts[0] // the common sidecar case: no string work at all
	}
	host := hostport
	// Only with a colon: SplitHostPort allocates its error for a host without a port.
	if strings.IndexByte(hostport, ':') >= 0 {
		if h, _, err := net.SplitHostPort(hostport); err == nil {
			host = h
		}
	}
	host = strings.ToLower(host)
	for _, v := range t.vhosts {
		if v.exact[host] {
			return v
		}
	}
	for _, v := range t.vhosts {
		for _, s := range v.suffixes {
			if strings.HasSuffix(host, s) {
				return v
			}
		}
		for _, p := range v.prefixes {
			if strings.HasPrefix(host, p) {
				return v
			}
		}
	}
	for _, v := range t.vhosts {
		if v.any {
			return v
		}
	}
	return nil
}

func (rt *Route) matches(r *http.Request) bool { return rt.match.matches(r) }

// PickTarget splits traffic by weight.
func (rt *Route) PickTarget() *Target {
	if len(rt.Targets) == 1 {
		return &rt.Targets[0]
	}
	x := rand.Uint64N(rt.total)
	for i := range rt.Targets {
		if x < uint64(rt.Targets[i].Weight) {
			return &rt.Targets[i]
		}
		x -= uint64(rt.Targets[i].Weight)
	}
	return &rt.Targets[len(rt.Targets)-1]
}

// EachRoute calls f for every route of the table, in match order.
func (t *Table) EachRoute(f func(*Route)) {
	for _, v := range t.vhosts {
		for _, r := range v.routes {
			f(r)
		}
	}
}
