package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/httpproxy"
	"github.com/knit-mesh/knit/proxy/identity"
	"github.com/knit-mesh/knit/proxy/identity/identitytest"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/mtls"
)

// wireTap sits on the wire between the two sidecars: it forwards every connection to target
// and keeps what the client side sent, so a test can look at the bytes between the proxies.
type wireTap struct {
	addr     string
	accepted atomic.Int64
	mu       sync.Mutex
	sent     bytes.Buffer
}

func startWireTap(t *testing.T, target string) *wireTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	w := &wireTap{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			w.accepted.Add(1)
			go w.relay(c, target)
		}
	}()
	return w
}

func (w *wireTap) relay(c net.Conn, target string) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(c, up)
		c.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(io.MultiWriter(w, up), c) // recorded before forwarded: the test reads the tap once it has the answer
	up.(*net.TCPConn).CloseWrite()
	<-done
}

func (w *wireTap) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sent.Len() < 1<<20 {
		w.sent.Write(b)
	}
	return len(b), nil
}

func (w *wireTap) bytesSent() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.sent.Bytes())
}

// serverSidecar is the server side's sidecar as identity id: inbound mutual TLS in mode, every
// connection's original destination whatever *dst holds.
func serverSidecar(t testing.TB, ca *identitytest.CA, mode mtls.Mode, id string) (*Proxy, *atomic.Pointer[netip.AddrPort], *identity.Manager) {
	t.Helper()
	cfg, err := config.Parse([]byte(passthroughYAML))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	ident := workloadIdentity(t, ca, id, m.Registry)
	in, err := mtls.NewInbound(mode, ident, logr.Discard(), m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	p := New(logr.Discard(), m)
	p.Inbound = in
	var dst atomic.Pointer[netip.AddrPort]
	p.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return *dst.Load(), nil }
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drainNow(p) })
	return p, &dst, ident
}

func drainNow(p *Proxy) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Drain(ctx)
}

// clientSidecarYAML routes HTTP/1 (listener h1), HTTP/2 (h2) and opaque TCP (tcp) to one
// meshed endpoint, whose identity discovery says is expectID.
func clientSidecarYAML(endpoint, expectID string) string {
	return fmt.Sprintf(`
listeners:
- {name: h1, address: "127.0.0.1:0", direction: outbound, protocol: http, routeConfig: h1}
- {name: h2, address: "127.0.0.1:0", direction: outbound, protocol: http, routeConfig: h2}
- {name: tcp, address: "127.0.0.1:0", direction: outbound, protocol: tcp, tcpCluster: web-tcp}
routeConfigs:
- name: h1
  virtualHosts: [{name: all, domains: ["*"], routes: [{name: web, clusters: [{name: web-h1}]}]}]
- name: h2
  virtualHosts: [{name: all, domains: ["*"], routes: [{name: web, clusters: [{name: web-h2}]}]}]
clusters:
- {name: web-h1, protocol: http1, endpoints: [{address: "%[1]s", meshed: true, identity: "%[2]s"}]}
- {name: web-h2, protocol: http2, endpoints: [{address: "%[1]s", meshed: true, identity: "%[2]s"}]}
- {name: web-tcp, protocol: tcp, endpoints: [{address: "%[1]s", meshed: true, identity: "%[2]s"}]}
`, endpoint, expectID)
}

// clientSidecar is the client side's sidecar with outbound mutual TLS as ident.
func clientSidecar(t testing.TB, ident *identity.Manager, mode mtls.Mode, yaml string) (*Proxy, *prometheus.Registry) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	out, err := mtls.NewOutbound(mode, ident, logr.Discard(), m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	p := New(logr.Discard(), m)
	p.Outbound = out
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drainNow(p) })
	return p, m.Registry
}

// protoEcho answers with the protocol the app received and the peer the sidecar named.
func protoEcho(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.Proto+" peer="+r.Header.Get(httpproxy.PeerIdentityHeader))
}

// tcpEcho is an opaque upstream that echoes lines.
func tcpEcho(t *testing.T) string {
	t.Helper()
	return tcpServer(t, func(c net.Conn) { io.Copy(c, c) })
}

func echoLine(t *testing.T, c net.Conn, br *bufio.Reader, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	got, err := br.ReadString('\n')
	if err != nil || got != line {
		t.Fatalf("echo of %q: %q %v", line, got, err)
	}
}

func setAddr(dst *atomic.Pointer[netip.AddrPort], addr string) {
	a := netip.MustParseAddrPort(addr)
	dst.Store(&a)
}

// isTLSRecordStream reports whether b is a sequence of well-formed TLS records (type 20-23,
// version 3.x), the first a handshake record.
func isTLSRecordStream(b []byte) bool {
	if len(b) < 5 || b[0] != 22 {
		return false
	}
	for len(b) >= 5 {
		if b[0] < 20 || b[0] > 23 || b[1] != 3 {
			return false
		}
		n := int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			return true // cut by the tap's cap
		}
		b = b[5+n:]
	}
	return len(b) == 0
}

func gathered(reg *prometheus.Registry, name string, labels ...string) float64 {
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestSidecarsCarryHTTP1HTTP2AndTCPOverMutualTLS(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	server, dst, _ := serverSidecar(t, ca, mtls.Strict, webID)
	tap := startWireTap(t, addr(t, server, "inbound"))
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	cli, reg := clientSidecar(t, cart, mtls.Strict, clientSidecarYAML(tap.addr, webID))

	setAddr(dst, httpUpstream(t, protoEcho))
	if code, body := get(t, client(), "http://"+addr(t, cli, "h1")+"/h1"); code != 200 || body != "HTTP/1.1 peer="+cartID {
		t.Fatalf("HTTP/1 through the pair: %d %q", code, body)
	}

	setAddr(dst, h2cUpstream(t, http.HandlerFunc(protoEcho)))
	resp, err := h2cClient().Get("http://" + addr(t, cli, "h2") + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "HTTP/2.0 peer="+cartID {
		t.Fatalf("HTTP/2 through the pair: %d %q", resp.StatusCode, b)
	}

	setAddr(dst, tcpEcho(t))
	c, err := net.Dial("tcp", addr(t, cli, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoLine(t, c, bufio.NewReader(c), "opaque bytes\n")

	wire := tap.bytesSent()
	if !isTLSRecordStream(wire) {
		t.Fatalf("the bytes between the sidecars are not TLS records: %q", wire[:min(len(wire), 64)])
	}
	for _, plain := range []string{"GET /h1", "PRI * HTTP/2.0", "/h2", "opaque bytes"} {
		if bytes.Contains(wire, []byte(plain)) {
			t.Fatalf("%q crossed the wire in plaintext", plain)
		}
	}
	if n := gathered(reg, "knit_proxy_outbound_mtls_handshakes_total", "result", "ok", "peer_identity", webID); n != 3 {
		t.Fatalf("outbound handshakes: %v, want 3 (one per protocol)", n)
	}
}

func TestSidecarRefusesAMeshedEndpointWithAnotherIdentity(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	// Discovery says the endpoint is payments; the workload there is web.
	const paymentsID = "spiffe://cluster.local/ns/shop/sa/payments"
	server, dst, _ := serverSidecar(t, ca, mtls.Permissive, webID)
	var reached atomic.Int64
	setAddr(dst, httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	cli, reg := clientSidecar(t, cart, mtls.Strict, clientSidecarYAML(addr(t, server, "inbound"), paymentsID))

	if code, _ := get(t, client(), "http://"+addr(t, cli, "h1")+"/"); code != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", code)
	}
	c, err := net.Dial("tcp", addr(t, cli, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "secret\n")
	if n, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatalf("the TCP connection to the wrong workload carried %d bytes", n)
	}
	c.Close()
	if reached.Load() != 0 {
		t.Fatal("the request reached the workload of the wrong identity")
	}
	if n := gathered(reg, "knit_proxy_outbound_mtls_handshakes_total", "result", "peer_identity_mismatch", "peer_identity", paymentsID); n < 2 {
		t.Fatalf("identity mismatches counted: %v, want 2", n)
	}
	if n := gathered(reg, "knit_request_failures_total", "reason", "peer_identity_mismatch"); n != 1 {
		t.Fatalf("failed requests with reason peer_identity_mismatch: %v, want 1\n%s", n, scrapeReg(t, reg))
	}
}

func scrapeReg(t *testing.T, reg *prometheus.Registry) string {
	families, _ := reg.Gather()
	var sb strings.Builder
	for _, f := range families {
		fmt.Fprintln(&sb, f.String())
	}
	return sb.String()
}

// notReadyIdentity is a workload identity that never got a certificate (its identity service
// is never asked).
func notReadyIdentity(t *testing.T, ca *identitytest.CA) *identity.Manager {
	t.Helper()
	dir := t.TempDir()
	token, bundle := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	os.WriteFile(token, []byte(identitytest.Token), 0o600)
	os.WriteFile(bundle, []byte(identitytest.PEM(ca.Root)), 0o600)
	m, err := identity.New(identity.Config{Address: ca.Addr, ID: cartID, TokenFile: token, TrustBundleFile: bundle, Log: logr.Discard()},
		prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWithoutACertificateStrictRefusesAndPermissiveSpeaksPlaintext(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	server, dst, _ := serverSidecar(t, ca, mtls.Permissive, webID)
	setAddr(dst, httpUpstream(t, protoEcho))
	tap := startWireTap(t, addr(t, server, "inbound"))

	strict, reg := clientSidecar(t, notReadyIdentity(t, ca), mtls.Strict, clientSidecarYAML(tap.addr, webID))
	if code, _ := get(t, client(), "http://"+addr(t, strict, "h1")+"/"); code != http.StatusServiceUnavailable {
		t.Fatalf("STRICT without a certificate: %d, want 503", code)
	}
	c, err := net.Dial("tcp", addr(t, strict, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("STRICT without a certificate opened a TCP connection")
	}
	c.Close()
	if tap.accepted.Load() != 0 {
		t.Fatalf("STRICT without a certificate connected to the meshed endpoint %d times", tap.accepted.Load())
	}
	if n := gathered(reg, "knit_proxy_outbound_mtls_unavailable_total", "action", "refused"); n != 2 {
		t.Fatalf("refusals counted: %v", n)
	}
	if n := gathered(reg, "knit_request_failures_total", "reason", "no_workload_certificate"); n != 1 {
		t.Fatalf("failed requests with reason no_workload_certificate: %v, want 1", n)
	}

	permissive, reg2 := clientSidecar(t, notReadyIdentity(t, ca), mtls.Permissive, clientSidecarYAML(tap.addr, webID))
	if code, body := get(t, client(), "http://"+addr(t, permissive, "h1")+"/plain"); code != 200 || body != "HTTP/1.1 peer=" {
		t.Fatalf("PERMISSIVE without a certificate: %d %q", code, body)
	}
	if !bytes.HasPrefix(tap.bytesSent(), []byte("GET /plain")) {
		t.Fatal("PERMISSIVE without a certificate did not speak plaintext")
	}
	if n := gathered(reg2, "knit_proxy_outbound_mtls_unavailable_total", "action", "plaintext"); n != 1 {
		t.Fatalf("plaintext fallbacks counted: %v", n)
	}
}

func TestRenewalsKeepOpenConnectionsAndMoveNewRequestsToNewConnections(t *testing.T) {
	// Certificates of 8 s renewed 7.5 s before expiry: both sidecars renew every half second,
	// with slack for a slow machine (an expired certificate would make STRICT refuse).
	ca := identitytest.Start(t, 8*time.Second)
	ca.RenewBefore = "7.5s"
	server, dst, _ := serverSidecar(t, ca, mtls.Strict, webID)
	tap := startWireTap(t, addr(t, server, "inbound"))
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	cli, _ := clientSidecar(t, cart, mtls.Strict, clientSidecarYAML(tap.addr, webID))

	// A TCP stream and a slow HTTP/1 response, both open across renewals.
	setAddr(dst, tcpEcho(t))
	stream, err := net.Dial("tcp", addr(t, cli, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	br := bufio.NewReader(stream)
	echoLine(t, stream, br, "before\n")

	release := make(chan struct{})
	started := make(chan struct{}, 1)
	setAddr(dst, httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		protoEcho(w, r)
	}))
	if code, _ := get(t, client(), "http://"+addr(t, cli, "h1")+"/"); code != 200 {
		t.Fatalf("first request: %d", code)
	}
	conns := tap.accepted.Load()
	slow := make(chan string, 1)
	go func() {
		resp, err := client().Get("http://" + addr(t, cli, "h1") + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	<-started

	gen := cart.Generation()
	issued := ca.Issued.Load()
	waitFor(t, "renewals on both sides", func() bool { return cart.Generation() >= gen+2 && ca.Issued.Load() >= issued+4 })

	close(release)
	if got := <-slow; got != "200 HTTP/1.1 peer="+cartID {
		t.Fatalf("the request in flight across renewals: %s", got)
	}
	echoLine(t, stream, br, "after renewals\n")

	setAddr(dst, httpUpstream(t, protoEcho))
	if code, body := get(t, client(), "http://"+addr(t, cli, "h1")+"/"); code != 200 || body != "HTTP/1.1 peer="+cartID {
		t.Fatalf("after renewals: %d %q", code, body)
	}
	if tap.accepted.Load() <= conns {
		t.Fatalf("the request after the renewal reused a connection made with the old certificate (connections %d, then %d)",
			conns, tap.accepted.Load())
	}
}

// workloadIdentityTrusting is workloadIdentity with the trust bundle file's content given (and
// re-read every 20 ms); it returns the bundle's path for the test to rewrite.
func workloadIdentityTrusting(t *testing.T, ca *identitytest.CA, id, bundlePEM string) (*identity.Manager, string) {
	t.Helper()
	dir := t.TempDir()
	token, bundle := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	os.WriteFile(token, []byte(identitytest.Token), 0o600)
	os.WriteFile(bundle, []byte(bundlePEM), 0o600)
	m, err := identity.New(identity.Config{Address: ca.Addr, ID: id, TokenFile: token, TrustBundleFile: bundle,
		BundleCheckInterval: 20 * time.Millisecond, Log: logr.Discard()}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "a certificate", m.Ready)
	return m, bundle
}

func TestOutboundTrustsEveryRootOfTheCurrentBundle(t *testing.T) {
	// The server side's certificate comes from a new root the client side does not trust yet,
	// as in the middle of a root rotation; the server side trusts both.
	oldCA, newCA := identitytest.Start(t, time.Hour), identitytest.Start(t, time.Hour)
	both := identitytest.PEM(oldCA.Root) + identitytest.PEM(newCA.Root)
	m := metrics.New()
	serverIdent, _ := workloadIdentityTrusting(t, newCA, webID, both)
	in, err := mtls.NewInbound(mtls.Strict, serverIdent, logr.Discard(), m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	server := New(logr.Discard(), m)
	server.Inbound = in
	app := netip.MustParseAddrPort(httpUpstream(t, protoEcho))
	server.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return app, nil }
	apply(t, server, passthroughYAML)
	t.Cleanup(func() { drainNow(server) })

	cart, bundle := workloadIdentityTrusting(t, oldCA, cartID, identitytest.PEM(oldCA.Root))
	cli, reg := clientSidecar(t, cart, mtls.Strict, clientSidecarYAML(addr(t, server, "inbound"), webID))
	if code, _ := get(t, client(), "http://"+addr(t, cli, "h1")+"/"); code != http.StatusBadGateway {
		t.Fatalf("a peer of an untrusted root: %d, want 502", code)
	}
	if n := gathered(reg, "knit_proxy_outbound_mtls_handshakes_total", "result", "untrusted_peer"); n != 1 {
		t.Fatalf("untrusted peers counted: %v", n)
	}

	gen := cart.Generation()
	tmp := bundle + ".new"
	os.WriteFile(tmp, []byte(both), 0o600)
	os.Rename(tmp, bundle)
	waitFor(t, "the new bundle", func() bool { return cart.Generation() > gen })
	if code, body := get(t, client(), "http://"+addr(t, cli, "h1")+"/"); code != 200 || body != "HTTP/1.1 peer="+cartID {
		t.Fatalf("with both roots trusted: %d %q", code, body)
	}
}

func TestMeshedConnectionsOutliveTheClustersAppSizedIdleTimeout(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	server, dst, _ := serverSidecar(t, ca, mtls.Strict, webID)
	setAddr(dst, httpUpstream(t, protoEcho))
	tap := startWireTap(t, addr(t, server, "inbound"))
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	// The cluster's idle timeout is for apps' keep-alive; its peer here is a sidecar.
	yaml := strings.Replace(clientSidecarYAML(tap.addr, webID), "{name: web-h1, protocol: http1,", "{name: web-h1, protocol: http1, idleTimeout: 100ms,", 1)
	cli, _ := clientSidecar(t, cart, mtls.Strict, yaml)
	for i := range 2 {
		if code, _ := get(t, client(), "http://"+addr(t, cli, "h1")+"/"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
		time.Sleep(300 * time.Millisecond) // idle beyond the cluster's idleTimeout
	}
	if n := tap.accepted.Load(); n != 1 {
		t.Fatalf("%d mutual TLS connections for two requests: the idle one was not reused", n)
	}
}

// cuttingRelay relays TCP connections to target until cut is closed; after that, a connection
// opened before the cut is closed, unanswered, as soon as its client sends anything: a peer
// sidecar ending all its pooled connections at once (idle timeout, drain) just as a request
// is sent. Connections opened after the cut are relayed.
func cuttingRelay(t *testing.T, target string, cut <-chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			before := true
			select {
			case <-cut:
				before = false
			default:
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(c, up)
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						select {
						case <-cut:
							if before {
								return // closes both sides without forwarding the request
							}
						default:
						}
						if _, err := up.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestMeshedPooledConnectionsClosedTogetherAreRetriedOnAFreshConnection(t *testing.T) {
	const pooled = 2
	ca := identitytest.Start(t, time.Hour)
	server, dst, _ := serverSidecar(t, ca, mtls.Permissive, webID)
	// The app holds its first answers until two requests are in flight, so the client
	// side opens two mutual TLS connections and keeps both in its pool.
	var inFlight atomic.Int64
	bothIn := make(chan struct{})
	setAddr(dst, httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if inFlight.Add(1) == pooled {
			close(bothIn)
		}
		select {
		case <-bothIn:
		case <-r.Context().Done():
		}
		w.Write([]byte("ok"))
	}))
	cut := make(chan struct{})
	relay := cuttingRelay(t, addr(t, server, "inbound"), cut)
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	cli, _ := clientSidecar(t, cart, mtls.Strict, clientSidecarYAML(relay, webID))
	url := "http://" + addr(t, cli, "h1") + "/"

	errs := make(chan error, pooled)
	for range pooled {
		go func() {
			code, body, err := tryGet(url)
			if err == nil && (code != 200 || body != "ok") {
				err = fmt.Errorf("%d %q", code, body)
			}
			errs <- err
		}()
	}
	for range pooled {
		if err := <-errs; err != nil {
			t.Fatalf("filling the pool: %v", err)
		}
	}
	close(cut)
	if code, body, err := tryGet(url); err != nil || code != 200 || body != "ok" {
		t.Fatalf("GET while the peer sidecar closes the pooled connections: %d %q %v", code, body, err)
	}
}

func tryGet(url string) (int, string, error) {
	resp, err := client().Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
