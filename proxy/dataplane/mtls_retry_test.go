package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/proxy/identity/identitytest"
	"github.com/knit-mesh/knit/proxy/mtls"
)

// lateFirstBytesRelay relays TCP connections to target. The client's bytes on the first
// connection are held until release is closed: a ClientHello from a CPU-starved client
// sidecar that reaches the peer after the peer's protocol detection gave up. What the peer
// sends back passes at once, and its close closes the client's side. Later connections are
// relayed as they come. accepted counts the connections.
func lateFirstBytesRelay(t *testing.T, target string, release <-chan struct{}) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := accepted.Add(1) == 1
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() {
					io.Copy(c, up)
					c.Close() // the peer closed: so does the client's side
				}()
				if first {
					b := make([]byte, 32<<10)
					n, err := c.Read(b) // the ClientHello, held back
					if err != nil {
						return
					}
					<-release
					if _, err := up.Write(b[:n]); err != nil {
						return
					}
				}
				io.Copy(up, c)
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// appSeeingConnections is the server side's app (HTTP/1 and h2c, answering "ok"); the first
// connection it accepts closes first.
func appSeeingConnections(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	first := make(chan struct{})
	var once sync.Once
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(true)
	s.Config.Protocols = &p
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			once.Do(func() { close(first) })
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), first
}

func TestAHandshakeThePeerTookForPlaintextIsRetriedOnAFreshConnection(t *testing.T) {
	// PERMISSIVE: the peer's detection gives up, it connects to the app as for opaque
	// plaintext, and only then the ClientHello arrives (the app answers HTTP 400).
	// STRICT: the peer refuses the connection it took for plaintext and closes it; the held
	// ClientHello never arrives.
	cases := []struct {
		peer     mtls.Mode
		listener string // the client sidecar's: h1 (HTTP/1 pool), h2 (HTTP/2 transport), tcp
	}{{mtls.Permissive, "h1"}, {mtls.Strict, "h1"}, {mtls.Permissive, "h2"}, {mtls.Strict, "tcp"}}
	for _, tc := range cases {
		t.Run(string(tc.peer)+"/"+tc.listener, func(t *testing.T) {
			ca := identitytest.Start(t, time.Hour)
			server, dst, _ := serverSidecar(t, ca, tc.peer, webID)
			app, appConnected := appSeeingConnections(t)
			release := appConnected
			if tc.peer == mtls.Strict {
				release = make(chan struct{})
			}
			if tc.listener == "tcp" {
				app = tcpEcho(t)
			}
			setAddr(dst, app)
			relay, accepted := lateFirstBytesRelay(t, addr(t, server, "inbound"), release)
			cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
			cli, reg := clientSidecar(t, cart, mtls.Strict, clientSidecarYAML(relay, webID))

			switch tc.listener {
			case "h1":
				if code, body, err := tryGet("http://" + addr(t, cli, "h1") + "/"); err != nil || code != 200 || body != "ok" {
					t.Fatalf("GET whose first ClientHello came after the peer's detect timeout: %d %q %v", code, body, err)
				}
			case "h2":
				h2c := h2cClient()
				defer h2c.CloseIdleConnections() // before the sidecars drain
				resp, err := h2c.Get("http://" + addr(t, cli, "h2") + "/")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok" {
					t.Fatalf("HTTP/2 GET whose first ClientHello came after the peer's detect timeout: %d %q", resp.StatusCode, b)
				}
			case "tcp":
				c, err := net.Dial("tcp", addr(t, cli, "tcp"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				echoLine(t, c, bufio.NewReader(c), "opaque bytes\n")
			}
			if n := accepted.Load(); n != 2 {
				t.Fatalf("%d connections to the peer, want 2 (the late one and one retry)", n)
			}
			if n := gathered(reg, "knit_proxy_outbound_mtls_handshakes_total", "result", "retried", "peer_identity", webID); n != 1 {
				t.Fatalf("retried handshakes counted: %v, want 1\n%s", n, scrapeReg(t, reg))
			}
			if n := gathered(reg, "knit_proxy_outbound_mtls_handshakes_total", "result", "ok", "peer_identity", webID); n != 1 {
				t.Fatalf("ok handshakes counted: %v, want 1", n)
			}
		})
	}
}

func TestAPeerOfAnotherIdentityIsNotRetried(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	const paymentsID = "spiffe://cluster.local/ns/shop/sa/payments"
	server, dst, _ := serverSidecar(t, ca, mtls.Permissive, webID)
	setAddr(dst, httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	tap := startWireTap(t, addr(t, server, "inbound"))
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	cli, reg := clientSidecar(t, cart, mtls.Strict, clientSidecarYAML(tap.addr, paymentsID))

	if code, _, err := tryGet("http://" + addr(t, cli, "h1") + "/"); err != nil || code != http.StatusBadGateway {
		t.Fatalf("GET to a peer of another identity: %d %v, want 502", code, err)
	}
	if n := tap.accepted.Load(); n != 1 {
		t.Fatalf("%d connections to the peer of another identity, want 1 (no retry)", n)
	}
	if n := gathered(reg, "knit_proxy_outbound_mtls_handshakes_total", "result", "retried"); n != 0 {
		t.Fatalf("retried handshakes counted: %v, want 0", n)
	}
	if n := gathered(reg, "knit_request_failures_total", "reason", "peer_identity_mismatch"); n != 1 {
		t.Fatalf("failed requests with reason peer_identity_mismatch: %v, want 1\n%s", n, scrapeReg(t, reg))
	}
}
