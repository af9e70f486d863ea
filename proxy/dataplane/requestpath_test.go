package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawRequest sends raw bytes to addr and reads one response.
func rawRequest(t *testing.T, addr, req string) (*http.Response, string, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", req, err)
	}
	var body string
	if resp.StatusCode != 101 && !(resp.StatusCode == 200 && strings.HasPrefix(req, "CONNECT")) {
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
	}
	return resp, body, c, br
}

// An app behind HTTPS_PROXY: its CONNECT reaches the proxy it addressed
// (the original destination), with its request-target and credentials, and
// the bytes after the 200 flow both ways.
func TestCONNECTThroughSidecarIsTunnelledToTheOriginalDestination(t *testing.T) {
	p, dst := startPassthrough(t)
	type seen struct{ method, target, auth string }
	got := make(chan seen, 1)
	corporateProxy := tcpServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		got <- seen{req.Method, req.RequestURI, req.Header.Get("Proxy-Authorization")}
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		io.Copy(c, br) // the "TLS" bytes, echoed
	})
	setDst(dst, corporateProxy)
	resp, _, c, br := rawRequest(t, addr(t, p, "outbound"),
		"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nProxy-Authorization: Basic eDp5\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	if s := <-got; s != (seen{"CONNECT", "api.example.com:443", "Basic eDp5"}) {
		t.Fatalf("the app's proxy saw %+v", s)
	}
	msg := "\x16\x03\x01 client hello"
	io.WriteString(c, msg)
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
		t.Fatalf("tunnel echo: %q %v", buf, err)
	}
}

// A listener with routes is not a forward proxy: CONNECT gets 405 and says why.
func TestCONNECTOnARoutedListenerIsRefusedWith405(t *testing.T) {
	hits := 0
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { hits++ })
	p := startProxy(t, simpleConfig(up))
	resp, body, _, _ := rawRequest(t, addr(t, p, "in"), "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
	if resp.StatusCode != 405 || !strings.Contains(body, "CONNECT is not supported") || resp.Header.Get("Allow") == "" || hits != 0 {
		t.Fatalf("%d %v %q, upstream hits %d", resp.StatusCode, resp.Header, body, hits)
	}
}

// Only upgrades the route allows are tunnelled: an h2c upgrade is forwarded
// as plain HTTP/1.1 without its Upgrade header, another protocol is refused,
// and a 101 that names a protocol the client did not ask for is a 502.
func TestOnlyAllowedUpgradesAreTunnelled(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" upgrade="+r.Header.Get("Upgrade")+" settings="+r.Header.Get("HTTP2-Settings"))
		mu.Unlock()
		if r.URL.Path == "/liar" { // answers a websocket request by switching to h2c
			c, brw, _ := http.NewResponseController(w).Hijack()
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			io.Copy(io.Discard, c)
			return
		}
		if r.Header.Get("Upgrade") != "" { // would accept any upgrade it is asked for
			c, brw, _ := http.NewResponseController(w).Hijack()
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + r.Header.Get("Upgrade") + "\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			io.Copy(c, brw)
			return
		}
		io.WriteString(w, "plain")
	})
	p := startProxy(t, simpleConfig(up))
	in := addr(t, p, "in")

	resp, body, _, _ := rawRequest(t, in, "GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	if resp.StatusCode != 200 || body != "plain" {
		t.Errorf("h2c upgrade: %d %q, want 200 \"plain\"", resp.StatusCode, body)
	}
	resp, body, _, _ = rawRequest(t, in, "GET /other HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: spdy/3.1\r\n\r\n")
	if resp.StatusCode != 403 || !strings.Contains(body, "spdy/3.1") {
		t.Errorf("spdy upgrade: %d %q, want 403", resp.StatusCode, body)
	}
	resp, _, _, _ = rawRequest(t, in, "GET /liar HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp.StatusCode != 502 {
		t.Errorf("101 to h2c for a websocket request: %d, want 502", resp.StatusCode)
	}
	resp, _, _, _ = rawRequest(t, in, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n")
	if resp.StatusCode != 101 {
		t.Errorf("websocket: %d, want 101", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"/h2c upgrade= settings=", "/liar upgrade=websocket settings=", "/ws upgrade=WebSocket settings="}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Errorf("upstream saw\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// wsEchoUpstream accepts a websocket upgrade and echoes raw bytes.
func wsEchoUpstream(t *testing.T) string {
	return httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw)
	})
}

func openWebSocket(t *testing.T, proxyAddr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	resp, _, c, br := rawRequest(t, proxyAddr, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade: %d", resp.StatusCode)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	return c, br
}

// closedByProxy waits (up to the connection's 30 s deadline) for the proxy
// to close the tunnel; a tunnel left open runs into the deadline instead.
func closedByProxy(t *testing.T, br *bufio.Reader) {
	t.Helper()
	_, err := br.ReadByte()
	if err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("tunnel still open: %v", err)
	}
}

func TestIdleTunnelIsClosed(t *testing.T) {
	up := wsEchoUpstream(t)
	cfg := strings.Replace(simpleConfig(up), "  routeConfig: main\n", "  routeConfig: main\n  limits: {tcpIdleTimeout: 300ms}\n", 1)
	p := startProxy(t, cfg)
	_, br := openWebSocket(t, addr(t, p, "in"))
	closedByProxy(t, br)
}

func TestDrainClosesTunnels(t *testing.T) {
	up := wsEchoUpstream(t)
	p := startProxy(t, simpleConfig(up)+"drain: {timeout: 300ms}\n")
	_, br := openWebSocket(t, addr(t, p, "in"))
	ctx, cancel := contextWithTimeout(300 * time.Millisecond)
	defer cancel()
	p.Drain(ctx)
	closedByProxy(t, br)
}

// A remote host may listen on the same port number as the proxy's
// listener; only a destination that reaches the listener itself is a loop.
func TestPassthroughForwardsToARemotePortEqualToTheListenerPort(t *testing.T) {
	p, dst := startPassthrough(t)
	port := strings.TrimPrefix(addr(t, p, "outbound"), "127.0.0.1:")
	ln, err := net.Listen("tcp", "127.0.0.2:"+port) // another host, as far as the listener on 127.0.0.1 is concerned
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "remote") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	setDst(dst, "127.0.0.2:"+port)
	code, body := get(t, client(), "http://"+addr(t, p, "outbound")+"/")
	if code != 200 || body != "remote" {
		t.Fatalf("%d %q", code, body)
	}
}

// Routing and forwarding see the same, normalised path: "..", "%2F", "//"
// and escaped dots cannot reach /admin through the public route.
func TestRoutingAndForwardingSeeTheNormalisedPath(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{}
	record := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[name] = append(seen[name], r.RequestURI)
			mu.Unlock()
		}
	}
	admin, public := httpUpstream(t, record("admin")), httpUpstream(t, record("public"))
	p := startProxy(t, fmt.Sprintf(`
listeners:
- {name: in, address: "127.0.0.1:0", routeConfig: main}
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - {name: admin, match: {prefix: /admin}, clusters: [{name: admin}]}
    - {name: public, clusters: [{name: public}]}
clusters:
- {name: admin, endpoints: [{address: %s}]}
- {name: public, endpoints: [{address: %s}]}
`, admin, public))
	for _, target := range []string{"//admin/x", "/public/../admin/x", "/public/..%2Fadmin/x", "/%2e%2e/admin/x",
		"/public%2F..%2F..%2Fadmin/x", "/./admin/x", "/public/%2E%2E/admin/x", "/public\\..\\admin/x"} {
		resp, _, _, _ := rawRequest(t, addr(t, p, "in"), "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", target, resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen["public"]) != 0 {
		t.Errorf("the public route forwarded %q", seen["public"])
	}
	for _, u := range seen["admin"] {
		if u != "/admin/x" {
			t.Errorf("the admin upstream received %q, want /admin/x", u)
		}
	}
	if len(seen["admin"]) != 8 {
		t.Errorf("admin upstream got %d requests, want 8", len(seen["admin"]))
	}
}

// Error replies name no internal address or dial error, for HTTP and gRPC
// clients alike; the access log keeps the detail.
func TestErrorRepliesDoNotLeakUpstreamAddresses(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String() // nothing listens here any more
	ln.Close()
	logFile := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, simpleConfig(dead)+"accessLog: {enabled: true, path: "+logFile+"}\n")
	_, port, _ := net.SplitHostPort(dead)
	leaks := func(s string) bool {
		return strings.Contains(s, "127.0.0.1") || strings.Contains(s, port) || strings.Contains(s, "dial") || strings.Contains(s, "refused")
	}
	resp, body, _, _ := rawRequest(t, addr(t, p, "in"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 502 || leaks(body) {
		t.Errorf("HTTP: %d %q", resp.StatusCode, body)
	}
	resp, _, _, _ = rawRequest(t, addr(t, p, "in"), "POST /pkg.Svc/M HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\nTE: trailers\r\nContent-Length: 0\r\n\r\n")
	msg := resp.Header.Get("Grpc-Message")
	if resp.Header.Get("Grpc-Status") != "14" || msg == "" || leaks(msg) {
		t.Errorf("gRPC: status %q message %q", resp.Header.Get("Grpc-Status"), msg)
	}
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), "refused") {
		t.Errorf("the access log lost the detail: %s", b)
	}
}

// Request bytes the client controls (invalid UTF-8, quotes) never break the
// JSON access log.
func TestAccessLogIsValidJSONForHostileRequests(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	logFile := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, simpleConfig(up)+"accessLog: {enabled: true, path: "+logFile+"}\n")
	targets := []string{"/\xff\xfe", "/a\"b\\c", "/%00%01", "/caf\xc3"}
	for _, target := range targets {
		rawRequest(t, addr(t, p, "in"), "GET "+target+" HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	b, _ := os.ReadFile(logFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(targets) {
		t.Fatalf("want %d lines, got %q", len(targets), b)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not JSON: %v: %q", err, l)
		}
	}
}

func TestAccessLogTextFormat(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	logFile := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, simpleConfig(up)+"accessLog: {enabled: true, path: "+logFile+", format: text}\n")
	get(t, client(), "http://"+addr(t, p, "in")+"/path?q=1")
	b, _ := os.ReadFile(logFile)
	line := string(b)
	if !strings.Contains(line, `"GET /path HTTP/1.1" 200 attempts=1 in=0 out=5 `) || !strings.Contains(line, " inbound default c "+up) ||
		strings.Count(line, "\n") != 1 {
		t.Fatalf("text line %q", line)
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// A connection that is not HTTP, on a listener with no tcpCluster, is closed
// with a FIN: its unread bytes are drained first, so the kernel does not
// reset it (h2spec http2/3.5/2 on the h2c listener).
func TestNonHTTPConnectionIsClosedWithoutReset(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p := startProxy(t, simpleConfig(up))
	c, err := net.Dial("tcp", addr(t, p, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "INVALID CONNECTION PREFACE\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Fatalf("got %q, %v; want a clean close", b, err)
	}
}

// CONNECT over HTTP/2 cannot become a byte tunnel here: 405, even on a sidecar listener.
func TestCONNECTOverHTTP2IsRefusedWith405(t *testing.T) {
	p, dst := startPassthrough(t)
	setDst(dst, httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {}))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &protos}}
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("CONNECT", "http://"+addr(t, p, "outbound"), pr)
	req.Host = "api.example.com:443"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 405 || resp.ProtoMajor != 2 {
		t.Fatalf("HTTP/%d %d", resp.ProtoMajor, resp.StatusCode)
	}
}

// The sidecar's routes tunnel WebSocket (and nothing else) by default.
func TestPassthroughTunnelsWebSocketOnly(t *testing.T) {
	p, dst := startPassthrough(t)
	setDst(dst, wsEchoUpstream(t))
	openWebSocket(t, addr(t, p, "outbound"))
	resp, _, _, _ := rawRequest(t, addr(t, p, "outbound"), "GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: spdy/3.1\r\n\r\n")
	if resp.StatusCode != 403 {
		t.Fatalf("spdy through the sidecar: %d, want 403", resp.StatusCode)
	}
}
