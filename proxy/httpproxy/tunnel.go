package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/route"
	"github.com/knit-mesh/knit/proxy/tcpproxy"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// tunnelHandshakeTimeout bounds the upstream's answer to a CONNECT or
// Upgrade request when the route sets no timeout.
const tunnelHandshakeTimeout = 30 * time.Second

var (
	errTunnelRefused = errors.New("upstream did not accept the tunnel")
	errDraining      = errors.New("listener is draining")
)

// upgradeOf returns the protocol an HTTP/1.1 request asks to switch to when
// the route allows it. A request for another protocol is refused (its name
// returned), except h2c: that Upgrade is dropped (with HTTP2-Settings) and the
// request goes on as plain HTTP/1.1, as a server that ignores Upgrade would answer it (tunnelling
// it would carry HTTP/2 streams past routing and authorization).
func upgradeOf(r *http.Request, rt *route.Route) (proto, refused string) {
	vals := r.Header["Upgrade"] // absent in almost every request: nothing else is looked at
	if len(vals) == 0 || r.ProtoMajor != 1 || !connectionHas(r.Header, "upgrade") {
		return "", ""
	}
	var protos []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				protos = append(protos, p)
			}
		}
	}
	onlyH2C := true
	for _, p := range protos {
		if name, _, _ := strings.Cut(p, "/"); !strings.EqualFold(name, "h2c") {
			onlyH2C = false
		}
	}
	switch {
	case onlyH2C:
		// Forwarded as plain HTTP/1.1: removeHopHeaders drops Upgrade and
		// Connection; HTTP2-Settings is hop-by-hop even when Connection omits it.
		delete(r.Header, "Http2-Settings")
		return "", ""
	case len(protos) == 1 && rt.AllowsUpgrade(protos[0]):
		return protos[0], ""
	}
	return "", strings.Join(protos, ", ")
}

func connectionHas(h http.Header, token string) bool {
	for _, v := range h["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// tunnel sends a CONNECT or Upgrade request on a connection of its own and,
// when the upstream accepts (2xx to CONNECT, 101 naming the requested
// protocol), joins the client and upstream connections until both sides are
// done, nothing moves for idle, or the listener drains. Any other answer is
// relayed as a normal response.
func (h *Handler) tunnel(w http.ResponseWriter, r *http.Request, rt *route.Route, c *upstream.Cluster, proto string, idle time.Duration) (int, int64, *balance.Endpoint, error) {
	ep := c.Pick()
	if ep == nil {
		writeError(w, r, http.StatusServiceUnavailable, ErrorMessage(http.StatusServiceUnavailable))
		return http.StatusServiceUnavailable, 0, nil, errNoEndpoint
	}
	timeout := tunnelHandshakeTimeout
	if rt.Timeout > 0 {
		timeout = rt.Timeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	ep.Start()
	sent := time.Now()
	backend, err := c.Dial(ctx, ep)
	ep.Done(time.Since(sent), err != nil)
	if err != nil {
		code := errorStatus(r, err)
		writeError(w, r, code, ErrorMessage(code))
		return code, 0, ep, err
	}
	done := false
	defer func() {
		if !done {
			backend.Close()
		}
	}()

	out := r.Clone(ctx)
	out.Body, out.ContentLength, out.TransferEncoding = nil, 0, nil
	removeHopHeaders(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // Request.Write would add Go's
	}
	if pa := r.Header["Proxy-Authorization"]; r.Method == http.MethodConnect && pa != nil {
		out.Header["Proxy-Authorization"] = pa // meant for the proxy the app addressed, not for us
	}
	if proto != "" {
		out.Header["Connection"] = []string{"Upgrade"}
		out.Header["Upgrade"] = []string{proto}
	} else {
		out.URL.Path, out.URL.RawPath = "", "" // authority-form: "CONNECT host:port"
		out.URL.Host = r.Host
	}
	backend.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReader(backend)
	var resp *http.Response
	if err = out.Write(backend); err == nil {
		for {
			resp, err = http.ReadResponse(br, out)
			if err != nil || resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode >= 200 {
				break
			}
			resp.Body.Close() // 100 Continue and the like
		}
	}
	if err != nil {
		code := errorStatus(r, err)
		writeError(w, r, code, ErrorMessage(code))
		return code, 0, ep, err
	}
	accepted := resp.StatusCode == http.StatusSwitchingProtocols
	if proto == "" {
		accepted = resp.StatusCode/100 == 2
	} else if accepted && !sameProtocol(resp.Header.Get("Upgrade"), proto) {
		// A server that switches to something the client did not ask for
		// would have the client misread the stream.
		writeError(w, r, http.StatusBadGateway, ErrorMessage(http.StatusBadGateway))
		return http.StatusBadGateway, 0, ep, fmt.Errorf("%w: asked for %q, got %q", errUnaskedSwitch, proto, resp.Header.Get("Upgrade"))
	}
	if !accepted {
		if resp.StatusCode == http.StatusSwitchingProtocols {
			resp.StatusCode = http.StatusBadGateway
		}
		backend.SetDeadline(time.Time{})
		n, _, err := copyResponse(w, resp)
		return resp.StatusCode, n, ep, errors.Join(errTunnelRefused, err)
	}

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, r, http.StatusInternalServerError, "cannot take over the connection")
		return http.StatusInternalServerError, 0, ep, fmt.Errorf("hijack: %w", err)
	}
	defer client.Close()
	if !h.tunnels.add(client, backend) {
		return resp.StatusCode, 0, ep, errDraining
	}
	defer h.tunnels.remove(client)
	backend.SetDeadline(time.Time{})
	client.SetDeadline(time.Time{}) // the server's read/write deadlines no longer apply
	fmt.Fprintf(brw, "HTTP/1.1 %03d %s\r\n", resp.StatusCode, strings.TrimPrefix(resp.Status, fmt.Sprintf("%03d ", resp.StatusCode)))
	resp.Header.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return resp.StatusCode, 0, ep, err
	}
	var toClient int64
	tcpproxy.Pipe(&bufferedConn{Conn: client, r: brw.Reader}, &bufferedConn{Conn: backend, r: br}, idle,
		func(float64) {}, func(n float64) { toClient += int64(n) })
	done = true
	backend.Close()
	return resp.StatusCode, toClient, ep, nil
}

// sameProtocol compares the 101's Upgrade with the requested protocol.
func sameProtocol(got, want string) bool {
	return strings.EqualFold(strings.TrimSpace(got), strings.TrimSpace(want))
}

// bufferedConn reads through the bytes already buffered for a connection.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// tunnels are the open CONNECT and Upgrade tunnels of a listener, which
// net/http no longer tracks once they are hijacked.
type tunnels struct {
	mu       sync.Mutex
	open     map[net.Conn]net.Conn // client → backend
	wg       sync.WaitGroup
	draining bool
}

func (t *tunnels) add(client, backend net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	if t.open == nil {
		t.open = map[net.Conn]net.Conn{}
	}
	t.open[client] = backend
	t.wg.Add(1)
	return true
}

func (t *tunnels) remove(client net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.open[client]; ok {
		delete(t.open, client)
		t.wg.Done()
	}
}

// DrainTunnels refuses new tunnels, waits for open ones to end until ctx
// ends, then closes the rest.
func (h *Handler) DrainTunnels(ctx context.Context) {
	t := &h.tunnels
	t.mu.Lock()
	t.draining = true
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	t.mu.Lock()
	for c, b := range t.open {
		c.Close()
		b.Close()
	}
	t.mu.Unlock()
	<-done
}
