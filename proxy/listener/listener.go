// Package listener accepts connections on one address and hands each to the
// right server: it sniffs the first bytes (HTTP/1, h2c, TLS or opaque) with a
// bounded timeout, terminates TLS when configured, and feeds HTTP connections
// to a net/http server (HTTP/1.1, h2c and h2 over TLS/ALPN) or opaque ones to
// the TCP proxy. One goroutine per connection, none per request.
package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/detect"
	"github.com/knit-mesh/knit/proxy/h2relay"
	"github.com/knit-mesh/knit/proxy/http1"
	"github.com/knit-mesh/knit/proxy/httpproxy"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/mtls"
	"github.com/knit-mesh/knit/proxy/passthrough"
	"github.com/knit-mesh/knit/proxy/route"
	"github.com/knit-mesh/knit/proxy/tcpproxy"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// Settings is everything a reload may change without rebinding the socket.
type Settings struct {
	Config     config.Listener
	TLS        *tls.Config // nil: no TLS termination
	TCPCluster *upstream.Cluster
	TCPStats   *metrics.Route
	// Passthrough, when set, forwards every connection to its original
	// destination; RouteConfig and TCPCluster are not used.
	Passthrough *passthrough.Registry
	// Inbound, when set on a passthrough listener, terminates mutual TLS from mesh peers and
	// applies mtls.mode to plaintext.
	Inbound *mtls.Inbound
	// Virtual are the destinations a passthrough listener serves itself
	// (virtual listeners) instead of forwarding to them.
	Virtual map[netip.AddrPort]*VirtualTarget
}

// VirtualTarget is how connections to one virtual listener's destination
// are served: HTTP through the handler's route table for that destination
// (when HTTP is set), anything else to TCPCluster.
type VirtualTarget struct {
	Name       string
	HTTP       bool
	TCPCluster *upstream.Cluster
	TCPStats   *metrics.Route
}

// Listener serves one bound address.
type Listener struct {
	log      logr.Logger
	ln       net.Listener
	handler  *httpproxy.Handler
	relay    *h2relay.Server // nil: every HTTP/2 connection goes through net/http
	settings atomic.Pointer[Settings]
	accepted chan struct{} // closed when the accept loop exits
	open     atomic.Int64  // downstream connections not yet closed

	mu      sync.Mutex
	current *generation
	old     []*generation
	opaque  map[net.Conn]struct{}       // opaque and still-sniffing connections
	h1      map[*http1.Conn]*generation // served by proxy/http1, with the generation they started in
	conns   sync.WaitGroup
	closing bool
	retired bool // Retire was called: every generation asks its clients to leave
}

// generation is one http.Server; a reload that changes server limits starts a
// new one for new connections while the old one drains its own.
type generation struct {
	srv    *http.Server
	queue  *connQueue
	limits config.ListenerLimits
	// retiring generations answer HTTP/1 requests with "Connection: close" and
	// send HTTP/2 clients a GOAWAY with their next response, so clients leave
	// them without racing a close of an idle connection.
	retiring atomic.Bool
}

// Start binds the address and begins accepting.
func Start(s *Settings, h *httpproxy.Handler, log logr.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", s.Config.Address)
	if err != nil {
		return nil, err
	}
	l := &Listener{log: log.WithValues("listener", s.Config.Name), ln: ln, handler: h,
		accepted: make(chan struct{}), opaque: map[net.Conn]struct{}{},
		h1: map[*http1.Conn]*generation{}}
	l.settings.Store(s)
	l.relay = newRelay(l, s)
	l.current = l.newGeneration(s.Config.Limits)
	go l.acceptLoop()
	return l, nil
}

// Addr is the bound address (useful with port 0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Update applies new settings; in-flight requests are not disturbed.
func (l *Listener) Update(s *Settings) {
	l.settings.Store(s)
	if l.relay != nil {
		l.relay.SetLimits(s.Config.Limits)
		l.relay.Reconsider()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing || reflect.DeepEqual(l.current.limits, s.Config.Limits) {
		return
	}
	prev := l.current
	l.current = l.newGeneration(s.Config.Limits)
	l.current.retiring.Store(l.retired)
	l.old = append(l.old, prev)
	prev.retiring.Store(true)
	// No new connections for the old server; those queued but not yet
	// accepted by it move to the new one.
	if left := prev.queue.closeAndTake(); len(left) > 0 {
		next := l.current.queue
		go func() {
			for _, c := range left {
				if !next.put(c) {
					c.Close()
				}
			}
		}()
	}
	go func() {
		// Busy clients leave on their next response; after the grace period
		// the rest (idle ones) are closed as an idle timeout would.
		time.Sleep(retireGrace)
		l.closeIdleH1(prev)
		ctx, cancel := context.WithTimeout(context.Background(), config.DefaultDrainTimeout)
		defer cancel()
		prev.srv.Shutdown(ctx)
	}()
}

// retireGrace is how long a retired generation keeps connections that
// have not yet been told to close.
var retireGrace = config.DefaultDrainTimeout

func (l *Listener) newGeneration(lim config.ListenerLimits) *generation {
	g := &generation{limits: lim}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Both framings parse as chunked (net/http drops Content-Length),
			// so only a chunked request can be a suspect one. net/http's HTTP/2
			// server turns "Connection: close" into a graceful GOAWAY.
			if g.retiring.Load() || (r.ProtoMajor == 1 && r.TransferEncoding != nil && framingSuspect(r.Context())) {
				w = &closeAfterReply{ResponseWriter: w}
			}
			defer httpproxy.GuardRequestBody(w, r, lim.RequestBodyIdleTimeout.D()).Release()
			w = httpproxy.GuardResponseWrites(w, r, lim.ResponseWriteTimeout.D())
			l.handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: lim.ReadHeaderTimeout.D(),
		IdleTimeout:       lim.IdleTimeout.D(),
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		Protocols:         &protos,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          1000,
			MaxDecoderHeaderTableSize:     4096,
			MaxReadFrameSize:              1 << 20,
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
		},
		// Passthrough connections carry their route to the handler; a
		// plaintext socket tells fast-path exchanges when its client is gone.
		ConnContext: connContext,
		// Handshake and malformed-request noise is not worth a log line each.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	g.srv, g.queue = srv, newConnQueue(l.ln.Addr())
	go srv.Serve(g.queue)
	return g
}

// connContext gives a connection's requests what the handler needs to know about it:
// passthrough connections carry their route, a plaintext socket tells fast-path exchanges
// when its client is gone.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if rc, ok := c.(*routedConn); ok {
		if rc.route != nil {
			ctx = httpproxy.WithRoute(ctx, rc.route)
		} else {
			ctx = httpproxy.WithDestination(ctx, rc.dest)
		}
		if rc.peer != "" {
			ctx = httpproxy.WithPeerIdentity(ctx, rc.peer)
		}
		c = rc.Conn
	}
	if fc, ok := c.(*framingConn); ok {
		ctx = context.WithValue(ctx, framingKey{}, fc)
	}
	if cc := watchedClient(c); cc != nil {
		ctx = upstream.WithClientConn(ctx, cc)
	}
	return ctx
}

func (l *Listener) acceptLoop() {
	defer close(l.accepted)
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, do not spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Error(err, "accept failed; backing off", "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if max := l.settings.Load().Config.Limits.MaxConnections; max > 0 && l.open.Load() >= int64(max) {
			l.log.V(1).Info("connection limit reached; closing a new connection", "max", max)
			c.Close()
			continue
		}
		l.open.Add(1)
		l.dispatch(&countedConn{Conn: c, open: &l.open})
	}
}

// dispatch decides per connection; only auto listeners pay for sniffing.
func (l *Listener) dispatch(c net.Conn) {
	s := l.settings.Load()
	if s.Passthrough != nil {
		l.goOpaque(c, func() { l.servePassthrough(c, s) })
		return
	}
	switch s.Config.Protocol {
	case config.ListenerHTTP:
		httpConn(c, s)
		if l.relays() {
			if s.TLS != nil {
				l.goOpaque(c, func() { l.serveTLSMaybeRelayed(c, c, s) })
			} else {
				l.goOpaque(c, func() { l.serveHTTPMaybeRelayed(c, s) })
			}
			return
		}
		if s.TLS != nil {
			l.serveHTTP(tls.Server(c, s.TLS))
		} else {
			go l.serveH1(c, func(c net.Conn) net.Conn { return newFramingConn(watchH2(c)) })
		}
	case config.ListenerTCP:
		l.goOpaque(c, func() { l.serveTCP(c, s, s.TLS != nil) })
	default:
		l.goOpaque(c, func() { l.detectAndServe(c, s) })
	}
}

func (l *Listener) detectAndServe(c net.Conn, s *Settings) {
	proto, conn, err := detect.Sniff(c, s.Config.DetectTimeout.D())
	if err != nil {
		c.Close()
		return
	}
	switch {
	case proto == detect.HTTP1 || proto == detect.HTTP2:
		if s.Config.RouteConfig == "" {
			l.serveTCP(conn, s, false)
			return
		}
		httpConn(c, s)
		if proto == detect.HTTP2 && l.relays() {
			l.relay.ServeConn(conn, bufio.NewReaderSize(conn, relayReadBufferSize))
			return
		}
		l.untrack(c)
		if proto == detect.HTTP1 {
			l.serveH1(conn, func(c net.Conn) net.Conn { return newFramingConn(c) })
		} else {
			l.serveHTTP(bufferH2(conn))
		}
	case proto == detect.TLS && s.TLS != nil && s.Config.RouteConfig != "":
		httpConn(c, s)
		if l.relays() {
			l.serveTLSMaybeRelayed(c, conn, s)
			return
		}
		l.untrack(c)
		l.serveHTTP(tls.Server(conn, s.TLS))
	default: // opaque, or TLS passthrough without a certificate
		l.serveTCP(conn, s, false)
	}
}

// servePassthrough forwards c to its original destination: HTTP (detected)
// through the HTTP request path, anything else as opaque TCP.
func (l *Listener) servePassthrough(c net.Conn, s *Settings) {
	raw := c
	if cc, ok := c.(*countedConn); ok {
		raw = cc.Conn
	}
	dst, err := s.Passthrough.Lookup(raw)
	if err == nil && passthrough.Loops(dst, l.ln.Addr().(*net.TCPAddr).AddrPort()) {
		err = passthrough.ErrLoop // a direct connection, never redirected: forwarding it would loop
	}
	if err != nil {
		l.log.V(1).Info("no original destination; closing", "remote", c.RemoteAddr().String(), "error", err.Error())
		c.Close()
		return
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if vt := s.Virtual[dst]; vt != nil {
		l.serveVirtual(c, s, dst, vt)
		return
	}
	var conn net.Conn = c
	proto, peer := detect.Opaque, ""
	if s.Config.Protocol != config.ListenerTCP || s.Inbound != nil {
		if proto, conn, err = sniff(c, s); err != nil {
			c.Close()
			return
		}
	}
	if s.Inbound != nil {
		if conn, peer, err = s.Inbound.Accept(conn, proto == detect.TLS, dst.String()); err != nil {
			c.Close()
			return
		}
		if peer != "" { // what a mesh peer sends inside TLS is detected as any connection is
			proto = detect.Opaque
			if s.Config.Protocol != config.ListenerTCP {
				if proto, conn, err = sniff(conn, s); err != nil {
					conn.Close()
					return
				}
			}
		}
	}
	cp := config.ClusterTCP
	switch proto {
	case detect.HTTP1:
		cp = config.ClusterHTTP1
	case detect.HTTP2:
		cp = config.ClusterHTTP2
	}
	rt, err := s.Passthrough.Route(dst, cp)
	if err != nil {
		l.log.V(1).Info("passthrough refused", "destination", dst.String(), "error", err.Error())
		c.Close()
		return
	}
	if cp != config.ClusterTCP {
		l.untrack(c)
		httpConn(c, s)
		var hc net.Conn = conn
		if cp == config.ClusterHTTP1 {
			if peer != "" {
				hc = &peerConn{Conn: conn}
			}
			l.serveH1(hc, func(c net.Conn) net.Conn { return &routedConn{Conn: newFramingConn(c), route: rt, peer: peer} })
			return
		}
		if peer == "" {
			hc = bufferH2(hc) // under mutual TLS the record layer buffers
		}
		l.serveHTTP(&routedConn{Conn: hc, route: rt, peer: peer})
		return
	}
	t := rt.PickTarget()
	if err := tcpproxy.Serve(context.Background(), conn, t.Cluster, t.Stats(s.Config.Direction), s.Config.Limits.TCPIdleTimeout.D()); err != nil {
		l.log.V(1).Info("tcp passthrough failed", "destination", dst.String(), "error", err.Error())
	}
}

// sniff detects the protocol of c's first bytes within the listener's detect timeout.
func sniff(c net.Conn, s *Settings) (detect.Protocol, net.Conn, error) {
	proto, dc, err := detect.Sniff(c, s.Config.DetectTimeout.D())
	if err != nil {
		return proto, nil, err
	}
	return proto, dc, nil
}

// serveVirtual serves a connection to a virtual listener's destination:
// HTTP by the virtual listener's routes, anything else by its TCP cluster.
func (l *Listener) serveVirtual(c net.Conn, s *Settings, dst netip.AddrPort, vt *VirtualTarget) {
	proto, conn := detect.Opaque, c
	if s.Config.Protocol != config.ListenerTCP {
		var err error
		if proto, conn, err = detect.Sniff(c, s.Config.DetectTimeout.D()); err != nil {
			c.Close()
			return
		}
	}
	if vt.HTTP && (proto == detect.HTTP1 || proto == detect.HTTP2) {
		cp := config.ClusterHTTP1
		if proto == detect.HTTP2 {
			cp = config.ClusterHTTP2
		}
		fallback, err := s.Passthrough.Route(dst, cp)
		if err != nil {
			c.Close()
			return
		}
		l.untrack(c)
		httpConn(c, s)
		dest := &httpproxy.VirtualDestination{Dst: dst, Fallback: fallback}
		if proto == detect.HTTP1 {
			l.serveH1(conn, func(c net.Conn) net.Conn { return &routedConn{Conn: newFramingConn(c), dest: dest} })
			return
		}
		l.serveHTTP(&routedConn{Conn: bufferH2(conn), dest: dest})
		return
	}
	if vt.TCPCluster == nil {
		refuse(conn)
		return
	}
	if err := tcpproxy.Serve(context.Background(), conn, vt.TCPCluster, vt.TCPStats, s.Config.Limits.TCPIdleTimeout.D()); err != nil {
		l.log.V(1).Info("tcp proxy failed", "virtualListener", vt.Name, "error", err.Error())
	}
}

// routedConn is a passthrough HTTP connection with its route, or a virtual
// listener's connection with its destination.
type routedConn struct {
	net.Conn
	route *route.Route
	dest  *httpproxy.VirtualDestination
	peer  string
}

// CloseWrite keeps half-close working for tunnels of passthrough connections.
func (c *routedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// serveHTTP gives the connection to the current http.Server, which then
// owns it. If a reload retired that server meanwhile, the next one takes it.
func (l *Listener) serveHTTP(c net.Conn) {
	for {
		l.mu.Lock()
		q, closing := l.current.queue, l.closing
		l.mu.Unlock()
		if closing {
			c.Close()
			return
		}
		if q.put(c) {
			return
		}
	}
}

// serveH1 serves a plaintext HTTP/1 connection with the engine of our own (proxy/http1).
// At the first request the engine leaves to net/http, the connection goes to the current
// http.Server, its unread bytes first, wrapped by wrap as net/http's connections of its kind
// are (wrap(c) also gives the engine's requests their context). Runs until the engine is done.
func (l *Listener) serveH1(c net.Conn, wrap func(net.Conn) net.Conn) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		c.Close()
		return
	}
	g := l.current
	lim := http1.Limits{ReadHeaderTimeout: g.limits.ReadHeaderTimeout.D(), IdleTimeout: g.limits.IdleTimeout.D()}
	hc := http1.NewConn(connContext(context.Background(), wrap(c)), c, g.srv.Handler, lim, g.retiring.Load)
	l.h1[hc] = g
	l.conns.Add(1)
	l.mu.Unlock()
	defer l.conns.Done()

	pending, handedOff := hc.Serve()
	l.mu.Lock()
	delete(l.h1, hc)
	l.mu.Unlock()
	if handedOff {
		l.serveHTTP(wrap(detect.Replay(c, pending)))
	}
}

// closeIdleH1 closes the engine's connections that wait for a request: of
// generation g, or all when g is nil.
func (l *Listener) closeIdleH1(g *generation) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for hc, hg := range l.h1 {
		if g == nil || hg == g {
			hc.CloseIdle()
		}
	}
}

// closeIdleH1Until closes the engine's idle connections, again and again as
// busy ones go idle (as http.Server.Shutdown does), until done is closed.
func (l *Listener) closeIdleH1Until(done <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			l.closeIdleH1(nil)
		}
	}
}

func (l *Listener) serveTCP(c net.Conn, s *Settings, terminateTLS bool) {
	if s.TCPCluster == nil {
		refuse(c)
		return
	}
	if terminateTLS {
		tc := tls.Server(c, s.TLS)
		ctx, cancel := context.WithTimeout(context.Background(), s.Config.Limits.ReadHeaderTimeout.D())
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			return
		}
		c = tc
	}
	if err := tcpproxy.Serve(context.Background(), c, s.TCPCluster, s.TCPStats, s.Config.Limits.TCPIdleTimeout.D()); err != nil {
		l.log.V(1).Info("tcp proxy failed", "error", err.Error())
	}
}

// refuseLinger bounds how long a refused connection's remaining bytes are read.
const refuseLinger = 500 * time.Millisecond

// refuse closes a connection the listener has no use for (not HTTP, and no
// tcpCluster) with a FIN rather than a reset: the kernel resets a socket
// closed with unread input, so the client's remaining bytes are read first,
// for a bounded time and amount.
func refuse(c net.Conn) {
	defer c.Close()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(refuseLinger))
	io.CopyN(io.Discard, c, 64<<10)
}

// goOpaque runs f for c in a tracked goroutine so drain can wait for it.
func (l *Listener) goOpaque(c net.Conn, f func()) {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.opaque[c] = struct{}{}
	l.conns.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.conns.Done()
		defer l.untrack(c)
		f()
	}()
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.opaque, c)
	l.mu.Unlock()
}

// Retire asks clients to leave while the listener still accepts: from now
// on every HTTP/1 response carries "Connection: close" and every HTTP/2
// response comes with a GOAWAY, on the connections open and on new ones, so
// clients reconnect (elsewhere, once a load balancer or discovery has stopped
// sending new connections here) without racing the close of an idle
// connection. Drain follows.
func (l *Listener) Retire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retired = true
	l.current.retiring.Store(true)
	if l.relay != nil {
		l.relay.Drain() // GOAWAY on relayed connections; new ones take the net/http path
	}
}

// Drain stops accepting, lets in-flight requests and streams finish until
// ctx ends, then closes whatever is left.
func (l *Listener) Drain(ctx context.Context) error {
	l.mu.Lock()
	l.closing = true
	gens := append([]*generation{l.current}, l.old...)
	l.mu.Unlock()
	l.ln.Close()
	<-l.accepted
	if l.relay != nil {
		l.relay.Drain()
	}

	for _, g := range gens {
		g.retiring.Store(true)
	}
	l.closeIdleH1(nil) // busy ones close after their response
	var wg sync.WaitGroup
	for _, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.srv.Shutdown(ctx); err != nil {
				g.srv.Close()
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); l.handler.DrainTunnels(ctx) }() // hijacked: Shutdown does not see them
	tcpDone := make(chan struct{})
	go func() { l.conns.Wait(); close(tcpDone) }()
	go l.closeIdleH1Until(tcpDone)
	select {
	case <-tcpDone:
	case <-ctx.Done():
		l.mu.Lock()
		for c := range l.opaque {
			c.Close()
		}
		for hc := range l.h1 {
			hc.Close()
		}
		l.mu.Unlock()
		<-tcpDone
	}
	wg.Wait()
	return ctx.Err()
}

// connQueue is a net.Listener fed by dispatch instead of a socket. put and
// close are serialised, so a connection is either accepted by the server or
// handed back by closeAndTake, never stranded in the buffer.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	mu     sync.Mutex
	closed bool
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn, 64), done: make(chan struct{})}
}

// put blocks while the buffer is full; the server's accept loop drains it.
func (q *connQueue) put(c net.Conn) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.ch <- c
	return true
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close is called by http.Server on Shutdown: queued connections are closed.
func (q *connQueue) Close() error {
	for _, c := range q.closeAndTake() {
		c.Close()
	}
	return nil
}

// closeAndTake stops the queue and returns the connections never accepted.
func (q *connQueue) closeAndTake() []net.Conn {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	close(q.done)
	var left []net.Conn
	for {
		select {
		case c := <-q.ch:
			left = append(left, c)
		default:
			return left
		}
	}
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// closeAfterReply adds "Connection: close" to a response of a retiring
// generation; net/http then closes the connection after the reply.
type closeAfterReply struct {
	http.ResponseWriter
	wrote bool
}

func (w *closeAfterReply) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		w.Header()["Connection"] = []string{"close"}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeAfterReply) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *closeAfterReply) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *closeAfterReply) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *closeAfterReply) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countedConn keeps the listener's count of open connections, bounds
// writes to HTTP clients, and reports the socket failing (EOF, reset, a
// failed write) to the exchange running for it, as net/http cancels the
// request's context for the same events.
type countedConn struct {
	net.Conn
	open   *atomic.Int64
	once   sync.Once
	write  writeTimeout
	client upstream.ClientConn
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !isTimeout(err) {
		// Not a deadline: net/http's own (background-read abort, header and
		// idle timeouts) and the body idle timeout leave the client there.
		c.client.Gone()
	}
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	c.write.before(c.Conn)
	n, err := c.Conn.Write(b)
	if err != nil {
		c.client.Gone()
	}
	return n, err
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error) // no errors.As: net/http aborts a read this way per request
	return ok && ne.Timeout()
}

// watchedClient finds, under the wrappers an HTTP/1 connection may have (passthrough route,
// framing watch, sniffed bytes), what reports its client going away: the accepted socket for
// plaintext, the stream above mutual TLS for a mesh peer (peerConn). Not under other TLS: a
// client's close_notify ends the TLS stream without the socket reporting anything, and
// net/http must see the *tls.Conn itself there (ALPN, r.TLS), so those requests are watched
// through their context.
func watchedClient(c net.Conn) *upstream.ClientConn {
	for {
		switch x := c.(type) {
		case *countedConn:
			return &x.client
		case *peerConn:
			return &x.client
		case *routedConn:
			c = x.Conn
		case *framingConn:
			c = x.Conn
		case *h2ReadConn:
			c = x.Conn
		case *detect.Conn:
			c = x.Conn
		default:
			return nil
		}
	}
}

// peerConn is a mesh peer's HTTP/1 stream inside mutual TLS. Above TLS, a close_notify, an
// alert and the socket failing are all read or write errors, so it reports them to the
// exchange running for the peer as countedConn does for a plaintext socket: no
// context.AfterFunc per request on the mesh path (about five allocations each).
type peerConn struct {
	net.Conn
	client upstream.ClientConn
}

func (c *peerConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && !isTimeout(err) {
		c.client.Gone()
	}
	return n, err
}

func (c *peerConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.client.Gone()
	}
	return n, err
}

// httpConn turns on the response write timeout for a connection that will
// carry HTTP (c is the accepted *countedConn).
func httpConn(c net.Conn, s *Settings) {
	if cc, ok := c.(*countedConn); ok {
		cc.write.d.Store(int64(s.Config.Limits.ResponseWriteTimeout))
	}
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// CloseWrite keeps half-close working through the wrapper.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
