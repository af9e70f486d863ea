// Package dataplane assembles the proxy from a config.Bootstrap: clusters,
// route tables, listeners, observers. Apply is used for the first config and
// for every reload; requests in flight keep the objects they started with.
package dataplane

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/accesslog"
	"github.com/knit-mesh/knit/proxy/capture"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/httpproxy"
	"github.com/knit-mesh/knit/proxy/listener"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/mtls"
	"github.com/knit-mesh/knit/proxy/passthrough"
	"github.com/knit-mesh/knit/proxy/route"
	"github.com/knit-mesh/knit/proxy/tlsfiles"
	"github.com/knit-mesh/knit/proxy/trace"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// Proxy is the running data plane.
type Proxy struct {
	log     logr.Logger
	Metrics *metrics.Metrics

	observers atomic.Pointer[httpproxy.Observers]
	draining  atomic.Bool
	retiring  atomic.Bool // Retire was called: the pod is going away
	ready     atomic.Bool
	current   atomic.Pointer[config.Bootstrap]

	mu        sync.Mutex // serialises Apply and Drain
	clusters  map[string]*upstream.Cluster
	listeners map[string]*runningListener
	certs     map[string]*tlsfiles.KeyPair // by cert+key path, reused across reloads
	passthru  map[string]*passthrough.Registry
	// sni are the TLS configs of listeners whose certificates come by server name, by content,
	// kept across reloads: an endpoint change neither parses the keys again nor resets TLS
	// session resumption.
	sni map[[sha256.Size]byte]*tls.Config

	// OriginalDst finds where a redirected connection was going, for
	// listeners with originalDestination (SO_ORIGINAL_DST by default; tests
	// replace it to forward on loopback without NAT). Set it before Apply.
	OriginalDst passthrough.Lookup
	// Inbound, when set, makes inbound original-destination listeners terminate mutual TLS from
	// mesh peers and apply mtls.mode to plaintext (the sidecar sets it). Set it before Apply.
	Inbound *mtls.Inbound
	// Outbound, when set, makes clusters reach the endpoints discovery marks as meshed over
	// mutual TLS (the sidecar sets it). Set it before Apply.
	Outbound *mtls.Outbound
}

type runningListener struct {
	cfg     config.Listener
	l       *listener.Listener
	handler *httpproxy.Handler
}

// New returns a proxy with nothing running yet.
func New(log logr.Logger, m *metrics.Metrics) *Proxy {
	p := &Proxy{log: log, Metrics: m, clusters: map[string]*upstream.Cluster{},
		listeners: map[string]*runningListener{}, certs: map[string]*tlsfiles.KeyPair{},
		passthru: map[string]*passthrough.Registry{}, OriginalDst: capture.OriginalDst}
	p.observers.Store(&httpproxy.Observers{})
	return p
}

// Apply makes cfg the running config. On error nothing changes (except
// listeners that could not be bound are reported), so a bad reload keeps the
// last good config serving.
func (p *Proxy) Apply(ctx context.Context, cfg *config.Bootstrap) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.draining.Load() {
		return errors.New("draining")
	}

	// Clusters first: routes and listeners point at them.
	clusters := map[string]*upstream.Cluster{}
	var mesh upstream.MeshTLS
	if p.Outbound != nil {
		mesh = p.Outbound
	}
	for _, cc := range cfg.Clusters {
		c, err := upstream.New(cc, cfg.EndpointsOf(cc.Name), p.clusters[cc.Name], mesh)
		if err != nil {
			return err
		}
		clusters[cc.Name] = c
	}
	tables := map[string]*route.Table{}
	for _, rc := range cfg.RouteConfigs {
		tables[rc.Name] = route.Compile(rc, clusters, p.Metrics)
	}
	virtual, virtualTables := p.virtualListeners(cfg, clusters, tables)
	settings := map[string]*listener.Settings{}
	sni := map[[sha256.Size]byte]*tls.Config{}
	for _, lc := range cfg.Listeners {
		s := &listener.Settings{Config: lc}
		if lc.TLS != nil && len(lc.TLS.SNI) > 0 {
			tc, err := p.sniConfig(lc.TLS, sni)
			if err != nil {
				return fmt.Errorf("listener %s: %w", lc.Name, err)
			}
			s.TLS = tc
		} else if lc.TLS != nil {
			kp, err := p.keyPair(lc.TLS.CertFile, lc.TLS.KeyFile)
			if err != nil {
				return fmt.Errorf("listener %s: %w", lc.Name, err)
			}
			s.TLS = tlsfiles.ServerConfig(kp, lc.TLS.ALPN)
		}
		if lc.OriginalDestination {
			reg, err := p.passthroughFor(lc)
			if err != nil {
				return fmt.Errorf("listener %s: %w", lc.Name, err)
			}
			s.Passthrough = reg
			if lc.Direction == config.Inbound {
				s.Inbound = p.Inbound
			}
			if lc.Direction == config.Outbound {
				s.Virtual = virtual
			}
		}
		if lc.TCPCluster != "" {
			s.TCPCluster = clusters[lc.TCPCluster]
			s.TCPStats = p.Metrics.For(string(lc.Direction), lc.Name, lc.TCPCluster)
		}
		settings[lc.Name] = s
	}
	obs, err := p.newObservers(ctx, cfg)
	if err != nil {
		return err
	}

	// Bind new listeners before touching running ones, so a port conflict fails the reload cleanly.
	started := map[string]*runningListener{}
	for _, lc := range cfg.Listeners {
		if rl := p.listeners[lc.Name]; rl != nil && rl.cfg.Address == lc.Address {
			continue
		}
		rl, err := p.startListener(lc, settings[lc.Name], handlerState(lc, tables[lc.RouteConfig], virtualTables))
		if err != nil {
			for _, s := range started {
				s.l.Drain(canceled())
			}
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		if p.retiring.Load() && lc.Direction != config.Outbound {
			rl.l.Retire()
		}
		started[lc.Name] = rl
	}

	// Commit: swap pointers; in-flight requests keep what they loaded.
	old := p.observers.Swap(obs)
	for _, lc := range cfg.Listeners {
		if rl := started[lc.Name]; rl != nil {
			if prev := p.listeners[lc.Name]; prev != nil {
				drainInBackground(prev.l, cfg)
			}
			p.listeners[lc.Name] = rl
			continue
		}
		rl := p.listeners[lc.Name]
		rl.cfg = lc
		rl.handler.State.Store(handlerState(lc, tables[lc.RouteConfig], virtualTables))
		rl.l.Update(settings[lc.Name])
	}
	for name, rl := range p.listeners {
		if _, keep := settings[name]; !keep {
			delete(p.listeners, name)
			drainInBackground(rl.l, cfg)
		}
	}
	for name, c := range p.clusters {
		if clusters[name] == nil || clusters[name].Transport != c.Transport {
			c.Close()
		}
	}
	p.clusters = clusters
	p.sni = sni
	if old != nil && old != obs {
		go closeObservers(old, obs)
	}
	p.current.Store(cfg)
	p.ready.Store(true)
	return nil
}

func handlerState(lc config.Listener, t *route.Table, virtual map[netip.AddrPort]*route.Table) *httpproxy.State {
	if t == nil {
		t = &route.Table{}
	}
	st := &httpproxy.State{Direction: lc.Direction, Routes: t, TunnelIdle: lc.Limits.TCPIdleTimeout.D()}
	if lc.OriginalDestination && lc.Direction == config.Outbound {
		if virtual == nil {
			virtual = map[netip.AddrPort]*route.Table{}
		}
		st.Virtual = virtual
	}
	return st
}

// virtualListeners compiles the virtual listeners for the captured outbound
// listeners: how to serve each destination, and its route table.
func (p *Proxy) virtualListeners(cfg *config.Bootstrap, clusters map[string]*upstream.Cluster, tables map[string]*route.Table) (map[netip.AddrPort]*listener.VirtualTarget, map[netip.AddrPort]*route.Table) {
	if len(cfg.VirtualListeners) == 0 {
		return nil, nil
	}
	targets := make(map[netip.AddrPort]*listener.VirtualTarget, len(cfg.VirtualListeners))
	rts := make(map[netip.AddrPort]*route.Table, len(cfg.VirtualListeners))
	for _, vl := range cfg.VirtualListeners {
		ap, err := netip.ParseAddrPort(vl.Address)
		if err != nil {
			continue // Validate refuses these
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		vt := &listener.VirtualTarget{Name: vl.Name, HTTP: vl.RouteConfig != ""}
		if vl.TCPCluster != "" {
			vt.TCPCluster = clusters[vl.TCPCluster]
			vt.TCPStats = p.Metrics.For(string(config.Outbound), vl.Name, vl.TCPCluster)
		}
		targets[ap] = vt
		if vt.HTTP {
			rts[ap] = tables[vl.RouteConfig]
		}
	}
	return targets, rts
}

func (p *Proxy) startListener(lc config.Listener, s *listener.Settings, st *httpproxy.State) (*runningListener, error) {
	h := &httpproxy.Handler{
		Observers: &p.observers,
		NoRoute:   p.Metrics.For(string(lc.Direction), "", ""),
		Log:       p.log,
	}
	h.State.Store(st)
	l, err := listener.Start(s, h, p.log)
	if err != nil {
		return nil, err
	}
	p.log.Info("listening", "listener", lc.Name, "address", l.Addr().String(), "protocol", lc.Protocol)
	return &runningListener{cfg: lc, l: l, handler: h}, nil
}

// passthroughFor keeps a listener's original-destination registry (and its
// pools) across reloads.
func (p *Proxy) passthroughFor(lc config.Listener) (*passthrough.Registry, error) {
	if r := p.passthru[lc.Name]; r != nil {
		return r, nil
	}
	r, err := passthrough.New(lc.Direction, p.OriginalDst, p.Metrics, config.Duration(config.DefaultConnectTimeout))
	if err != nil {
		return nil, err
	}
	p.passthru[lc.Name] = r
	return r, nil
}

// sniConfig returns the TLS config for t's certificates by server name: the running one when
// they have not changed, else a new one; it records what this reload keeps in next.
func (p *Proxy) sniConfig(t *config.ServerTLS, next map[[sha256.Size]byte]*tls.Config) (*tls.Config, error) {
	h := sha256.New()
	for _, a := range t.ALPN {
		fmt.Fprintf(h, "alpn %q\n", a)
	}
	for _, e := range t.SNI {
		fmt.Fprintf(h, "entry %q %q\n", e.Name, e.ServerNames)
		for _, c := range e.Certificates {
			fmt.Fprintf(h, "pair %q %q\n", c.CertificatePEM, c.KeyPEM)
		}
	}
	var k [sha256.Size]byte
	copy(k[:], h.Sum(nil))
	if tc := p.sni[k]; tc != nil {
		next[k] = tc
		return tc, nil
	}
	tc, err := tlsfiles.SNIConfig(t.SNI, t.ALPN)
	if err != nil {
		return nil, err
	}
	next[k] = tc
	return tc, nil
}

func (p *Proxy) keyPair(cert, key string) (*tlsfiles.KeyPair, error) {
	k := cert + "\x00" + key
	if kp := p.certs[k]; kp != nil {
		return kp, nil
	}
	kp, err := tlsfiles.LoadKeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	p.certs[k] = kp
	return kp, nil
}

func (p *Proxy) newObservers(ctx context.Context, cfg *config.Bootstrap) (*httpproxy.Observers, error) {
	cur := p.observers.Load()
	prev := p.current.Load()
	if prev != nil && reflect.DeepEqual(prev.AccessLog, cfg.AccessLog) && reflect.DeepEqual(prev.Tracing, cfg.Tracing) {
		return cur, nil
	}
	obs := &httpproxy.Observers{}
	if cfg.AccessLog.Enabled {
		format := accesslog.JSON
		if cfg.AccessLog.Format == config.AccessLogText {
			format = accesslog.Text
		}
		l, err := accesslog.Open(cfg.AccessLog.Path, format)
		if err != nil {
			return nil, fmt.Errorf("accessLog.path: %w", err)
		}
		obs.AccessLog = l
	}
	t, err := trace.New(ctx, cfg.Tracing)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	obs.Tracer = t
	return obs, nil
}

// SetTracer replaces the tracer (tests inject an in-memory exporter).
func (p *Proxy) SetTracer(t *trace.Tracer) {
	o := *p.observers.Load()
	o.Tracer = t
	p.observers.Store(&o)
}

func closeObservers(old, cur *httpproxy.Observers) {
	if old.AccessLog != cur.AccessLog {
		old.AccessLog.Close()
	}
	if old.Tracer != cur.Tracer {
		old.Tracer.Shutdown(context.Background())
	}
}

// ListenerAddr returns where a listener is bound.
func (p *Proxy) ListenerAddr(name string) net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rl := p.listeners[name]; rl != nil {
		return rl.l.Addr()
	}
	return nil
}

// Ready is true once a config is applied, and false again once retiring or draining.
func (p *Proxy) Ready() bool { return p.ready.Load() && !p.retiring.Load() && !p.draining.Load() }

// Retire is the first step of a sidecar's shutdown, taken when its pod starts terminating
// (the injector's preStop hook calls it through the admin port while the kubelet signals the
// app): /ready fails, and every listener but the outbound ones keeps accepting while asking
// its clients to leave (HTTP/1 "Connection: close", HTTP/2 GOAWAY), so that peers still
// sending here until discovery drops this pod are served and then move away without racing
// the close of an idle connection. Outbound listeners serve the app, which may still be
// finishing its work, as before, and configuration updates still apply. Drain follows on
// SIGTERM, which the kubelet sends a native sidecar once the app containers have exited.
func (p *Proxy) Retire() {
	if p.retiring.Swap(true) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, rl := range p.listeners {
		if rl.cfg.Direction != config.Outbound {
			rl.l.Retire()
		}
	}
	p.log.Info("retiring: not ready; inbound clients are asked to leave, outbound traffic is served as before")
}

// Retiring reports whether Retire was called.
func (p *Proxy) Retiring() bool { return p.retiring.Load() }

// CurrentConfig is the running config, for /config.
func (p *Proxy) CurrentConfig() any { return p.current.Load() }

// Drain turns /ready to 503; for the config's drain.delay it keeps accepting
// while asking clients to leave (HTTP/1 Connection: close, HTTP/2 GOAWAY), so connections
// that load balancers still send here are served; then it stops accepting
// on every listener, lets in-flight work finish until ctx ends, and closes
// the rest. ctx bounds the delay too.
func (p *Proxy) Drain(ctx context.Context) error {
	p.draining.Store(true)
	p.mu.Lock()
	ls := make([]*runningListener, 0, len(p.listeners))
	for _, rl := range p.listeners {
		ls = append(ls, rl)
	}
	p.mu.Unlock()
	if cfg := p.current.Load(); cfg != nil && cfg.Drain.Delay > 0 {
		for _, rl := range ls {
			rl.l.Retire()
		}
		delay := time.NewTimer(cfg.Drain.Delay.D())
		select {
		case <-delay.C:
		case <-ctx.Done():
			delay.Stop()
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, rl := range ls {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = rl.l.Drain(ctx) }()
	}
	wg.Wait()
	obs := p.observers.Load()
	obs.Tracer.Shutdown(context.Background())
	obs.AccessLog.Close()
	return errors.Join(errs...)
}

// drainInBackground retires a listener that a reload removed or moved.
func drainInBackground(l *listener.Listener, cfg *config.Bootstrap) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Drain.Timeout.D())
		defer cancel()
		l.Drain(ctx)
	}()
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
