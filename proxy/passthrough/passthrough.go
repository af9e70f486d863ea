// Package passthrough forwards each connection to its original destination
// (where it was going before the capture rules redirected it to the proxy),
// as Envoy's ORIGINAL_DST cluster does. It hands the HTTP path and the TCP
// proxy a route with one target per destination, so HTTP requests keep the
// full request path (metrics, access log, tracing) and opaque TCP the byte
// counters. Pools are shared per protocol: per-destination clusters borrow
// the connection pools of one base cluster.
package passthrough

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/route"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// Lookup returns a connection's original destination.
type Lookup func(net.Conn) (netip.AddrPort, error)

// maxRoutes bounds the per-destination cache; past it the cache starts over
// (only per-endpoint latency state is lost: the pools live in the base clusters).
const maxRoutes = 4096

// Registry makes and caches the routes of one listener.
type Registry struct {
	Lookup    Lookup
	direction config.Direction
	metrics   *metrics.Metrics
	base      map[config.ClusterProtocol]*upstream.Cluster

	mu     sync.Mutex
	routes map[key]*route.Route
}

type key struct {
	dst   netip.AddrPort
	proto config.ClusterProtocol
}

// ErrLoop is returned for a connection whose original destination is the
// listener itself (a direct connection that was never redirected).
var ErrLoop = errors.New("original destination is the proxy's own listener")

// Loops reports whether a connection to dst would come back to the
// listener bound at self: same port, and an address that reaches it (the
// bound address, or any local address when it is bound to all of them). A
// remote host that happens to use the listener's port is not a loop.
func Loops(dst, self netip.AddrPort) bool {
	if dst.Port() != self.Port() {
		return false
	}
	a, s := dst.Addr().Unmap(), self.Addr().Unmap()
	if !s.IsUnspecified() {
		return a == s
	}
	return a.IsUnspecified() || a.IsLoopback() || isLocal(a)
}

// isLocal reports whether a is an address of this host (the pod).
func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // cannot tell: refusing is the safe side
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

// New returns a registry for a listener.
func New(direction config.Direction, lookup Lookup, m *metrics.Metrics, connectTimeout config.Duration) (*Registry, error) {
	r := &Registry{Lookup: lookup, direction: direction, metrics: m,
		base: map[config.ClusterProtocol]*upstream.Cluster{}, routes: map[key]*route.Route{}}
	for _, p := range []config.ClusterProtocol{config.ClusterHTTP1, config.ClusterHTTP2, config.ClusterTCP} {
		c, err := upstream.New(spec(p, connectTimeout), nil, nil, nil)
		if err != nil {
			return nil, err
		}
		r.base[p] = c
	}
	return r, nil
}

func spec(p config.ClusterProtocol, connectTimeout config.Duration) config.Cluster {
	b := config.Bootstrap{Clusters: []config.Cluster{{
		Name: "passthrough-" + string(p), Protocol: p, LBPolicy: config.LBRoundRobin, ConnectTimeout: connectTimeout,
	}}}
	b.SetDefaults()
	return b.Clusters[0] // no outlier detection: ejecting the only endpoint would refuse all traffic
}

// Route returns the route for connections (or HTTP requests) to dst.
func (r *Registry) Route(dst netip.AddrPort, proto config.ClusterProtocol) (*route.Route, error) {
	if !dst.IsValid() || dst.Addr().IsUnspecified() || dst.Port() == 0 {
		return nil, fmt.Errorf("%w (%s)", ErrLoop, dst)
	}
	k := key{dst, proto}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rt := r.routes[k]; rt != nil {
		return rt, nil
	}
	base := r.base[proto]
	c, err := upstream.New(base.Spec, []config.Endpoint{{Address: dst.String(), Weight: 1}}, base, nil)
	if err != nil {
		return nil, err
	}
	// Metric labels: route is the direction, upstream the destination port
	// (bounded, unlike addresses). The control plane will name services.
	name := string(r.direction) + "|" + strconv.Itoa(int(dst.Port()))
	stats := r.metrics.For(string(r.direction), string(r.direction), name)
	rt := &route.Route{Name: string(r.direction), Upgrades: route.DefaultUpgrades,
		Targets: []route.Target{{Cluster: c, Weight: 1, Inbound: stats, Outbound: stats}}}
	if len(r.routes) >= maxRoutes {
		r.routes = map[key]*route.Route{}
	}
	r.routes[k] = rt
	return rt, nil
}

// Close releases the pooled idle connections.
func (r *Registry) Close() {
	for _, c := range r.base {
		c.Close()
	}
}
