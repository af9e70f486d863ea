package dataplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// simpleConfig: one auto listener "in" routing everything to cluster "c".
func simpleConfig(endpoints ...string) string { return proxyConfig("", "", "", endpoints...) }

func TestHTTP1KeepAliveAndChunked(t *testing.T) {
	var upConns sync.Map
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		upConns.Store(r.RemoteAddr, true)
		f := w.(http.Flusher)
		for i := range 3 {
			fmt.Fprintf(w, "chunk%d;", i)
			f.Flush() // forces chunked encoding
		}
	})
	p := startProxy(t, simpleConfig(up))
	cl := client()
	reused := 0
	for range 20 {
		req, _ := http.NewRequest("GET", "http://"+addr(t, p, "in")+"/x", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) {
				if i.Reused {
					reused++
				}
			}}))
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "chunk0;chunk1;chunk2;" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("response not chunked: %v", resp.TransferEncoding)
		}
	}
	if reused != 19 {
		t.Fatalf("client reused its connection %d times, want 19", reused)
	}
	n := 0
	upConns.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Fatalf("upstream saw %d connections for 20 sequential requests; want 1 (pooled keep-alive)", n)
	}
}

func TestChunkedRequestBodyAndPOST(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %s", r.Method, len(b), r.TransferEncoding)
	})
	p := startProxy(t, simpleConfig(up))
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte(strings.Repeat("a", 100000))); pw.Close() }()
	resp, err := client().Post("http://"+addr(t, p, "in")+"/up", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST 100000 [chunked]" {
		t.Fatalf("got %q", b)
	}
}

func TestWebSocketUpgradePassthrough(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo raw frames
	})
	p := startProxy(t, simpleConfig(up))
	c, err := net.Dial("tcp", addr(t, p, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"ping", "\x81\x05hello", "pong"} {
		c.Write([]byte(msg))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: got %q %v", msg, buf, err)
		}
	}
}

func TestH2CPriorKnowledgeToHTTP1Upstream(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream saw HTTP/%d", r.ProtoMajor)
	})
	p := startProxy(t, simpleConfig(up))
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	resp, err := c.Get("http://" + addr(t, p, "in") + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "upstream saw HTTP/1" {
		t.Fatalf("client proto %d, body %q", resp.ProtoMajor, b)
	}
}

func tlsListenerConfig(up, cert, key string) string {
	return simpleConfig(up) + fmt.Sprintf(`
- name: tls
  address: 127.0.0.1:0
  routeConfig: main
  tls: {certFile: %s, keyFile: %s}
`, cert, key)
}

func TestTLSListenerALPNAndCertReload(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	dir := t.TempDir()
	certFile, keyFile, der := writeCert(t, dir, "first")
	// the listener list in simpleConfig is followed by other keys; put the tls listener in its own config
	cfg := strings.Replace(simpleConfig(up), "listeners:\n", fmt.Sprintf("listeners:\n- name: tls\n  address: 127.0.0.1:0\n  routeConfig: main\n  tls: {certFile: %s, keyFile: %s}\n", certFile, keyFile), 1)
	p := startProxy(t, cfg)

	try := func(alpn []string) (*http.Response, *x509.Certificate, error) {
		c := &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, NextProtos: alpn},
			ForceAttemptHTTP2: len(alpn) > 0 && alpn[0] == "h2",
		}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://" + addr(t, p, "tls") + "/")
		if err != nil {
			return nil, nil, err
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, resp.TLS.PeerCertificates[0], nil
	}
	resp, cert, err := try([]string{"h2", "http/1.1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || resp.TLS.NegotiatedProtocol != "h2" || string(cert.Raw) != string(der) {
		t.Fatalf("want h2 with first cert, got proto %d alpn %q cn %s", resp.ProtoMajor, resp.TLS.NegotiatedProtocol, cert.Subject.CommonName)
	}
	resp, _, err = try([]string{"http/1.1"})
	if err != nil || resp.ProtoMajor != 1 {
		t.Fatalf("http/1.1 over TLS: %v %v", err, resp)
	}
	// The same auto listener also still takes plaintext HTTP.
	if code, _ := get(t, client(), "http://"+addr(t, p, "tls")+"/"); code != 200 {
		t.Fatalf("plaintext on auto TLS listener: %d", code)
	}

	// Rotate the certificate on disk; new handshakes must pick it up.
	_, _, der2 := writeCert(t, dir, "second")
	waitFor(t, "the rotated certificate to be served", func() bool {
		_, c, err := try([]string{"h2"})
		return err == nil && string(c.Raw) == string(der2)
	})
}

func TestUpstreamTLS(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v", r.TLS != nil)
	}))
	defer s.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pemCert(s.Certificate().Raw), 0o600)
	cfg := simpleConfig(s.Listener.Addr().String()) + fmt.Sprintf("  tls: {caFile: %s, serverName: example.com}\n", ca)
	p := startProxy(t, cfg)
	code, body := get(t, client(), "http://"+addr(t, p, "in")+"/")
	if code != 200 || body != "tls=true" {
		t.Fatalf("got %d %q", code, body)
	}
}

func TestMalformedRequestsGetCleanErrors(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	cfg := strings.Replace(simpleConfig(up, "127.0.0.1:1"), "  routeConfig: main\n",
		"  routeConfig: main\n  limits: {maxHeaderBytes: 4096, readHeaderTimeout: 300ms}\n", 1)
	p := startProxy(t, cfg)
	a := addr(t, p, "in")
	raw := func(req string) string {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write([]byte(req))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	cases := map[string]string{
		"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n":                      "400",
		"GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n": "431",
		"GET / HTTP/9.9\r\nHost: x\r\n\r\n":                                         "505",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n":                   "400",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bogus\r\n\r\n":             "501",
	}
	for req, want := range cases {
		if got := raw(req); !strings.Contains(got, " "+want+" ") {
			t.Errorf("request %.40q: status line %q, want %s", req, got, want)
		}
	}
	// Slowloris: a client that never finishes its headers is cut off.
	c, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	io.Copy(io.Discard, c)
	if time.Since(start) > 20*time.Second {
		t.Fatal("slow header client was not disconnected")
	}
	c.Close()
	// One dead endpoint of two: without retries some requests fail, cleanly as 502.
	for range 10 {
		if code, _ := get(t, client(), "http://"+a+"/"); code != 200 && code != 502 {
			t.Fatalf("got %d, want 200 or 502", code)
		}
	}
	// The proxy is still serving.
	if code, _ := get(t, client(), "http://"+a+"/"); code != 200 && code != 502 {
		t.Fatalf("proxy not serving after bad input: %d", code)
	}
}

func TestOpaqueTCPServerSpeaksFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("220 smtp ready\r\n")) // server speaks first
				io.Copy(c, c)
			}()
		}
	}()
	cfg := fmt.Sprintf(`
listeners:
- name: in
  address: 127.0.0.1:0
  detectTimeout: 100ms
  tcpCluster: db
clusters:
- name: db
  protocol: tcp
  endpoints: [{address: %s}]
`, ln.Addr())
	p := startProxy(t, cfg)
	c, err := net.Dial("tcp", addr(t, p, "in"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "220 smtp ready\r\n" {
		t.Fatalf("greeting %q %v", line, err)
	}
	c.Write([]byte("EHLO x\r\n"))
	line, _ = br.ReadString('\n')
	if line != "EHLO x\r\n" {
		t.Fatalf("echo %q", line)
	}
	// Binary client-first protocol too.
	c2, _ := net.Dial("tcp", addr(t, p, "in"))
	c2.SetDeadline(time.Now().Add(30 * time.Second))
	c2.Write([]byte{0, 0, 0, 8, 4, 210, 22, 47})
	buf := make([]byte, 16+8)
	io.ReadFull(c2, buf)
	if string(buf[16:]) != string([]byte{0, 0, 0, 8, 4, 210, 22, 47}) {
		t.Fatalf("binary echo %q", buf)
	}
	c2.Close()
	c.Close()
	waitFor(t, "tcp close to be counted", func() bool {
		return metricValue(t, p, "knit_tcp_connections_closed_total", `route="in"`, `upstream="db"`) == "2"
	})
	if v := metricValue(t, p, "knit_tcp_bytes_total", `flow="received"`, `route="in"`); v != "16" {
		t.Log(scrape(t, p))
		t.Fatalf("received bytes %s, want 16", v)
	}
	if v := metricValue(t, p, "knit_tcp_bytes_total", `flow="sent"`, `route="in"`); v != "48" {
		t.Fatalf("sent bytes %s, want 48", v)
	}
	if v := metricValue(t, p, "knit_tcp_connections_opened_total", `direction="inbound"`, `route="in"`); v != "2" {
		t.Fatalf("opened %s", v)
	}
	_ = context.Background
}

func TestHTTP2OverTLSUpstream(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "HTTP/%d tls=%v", r.ProtoMajor, r.TLS != nil)
	}))
	s.EnableHTTP2 = true
	s.StartTLS()
	defer s.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pemCert(s.Certificate().Raw), 0o600)
	cfg := strings.Replace(simpleConfig(s.Listener.Addr().String()), "- name: c\n", "- name: c\n  protocol: http2\n", 1) +
		fmt.Sprintf("  tls: {caFile: %s, serverName: example.com}\n", ca)
	p := startProxy(t, cfg)
	code, body := get(t, client(), "http://"+addr(t, p, "in")+"/")
	if code != 200 || body != "HTTP/2 tls=true" {
		t.Fatalf("got %d %q; want h2 over TLS (ALPN) to the upstream", code, body)
	}
}

func TestTLSPassthroughToTCPCluster(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "end-to-end TLS")
	}))
	defer s.Close()
	// No certificate on the listener: a TLS ClientHello is detected and the
	// stream passed through untouched to the tcp cluster.
	cfg := fmt.Sprintf(`
listeners:
- name: in
  address: 127.0.0.1:0
  tcpCluster: tls-backend
clusters:
- name: tls-backend
  protocol: tcp
  endpoints: [{address: %s}]
`, s.Listener.Addr())
	p := startProxy(t, cfg)
	c := s.Client()
	c.Timeout = 30 * time.Second
	resp, err := c.Get("https://" + addr(t, p, "in") + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "end-to-end TLS" || resp.TLS == nil {
		t.Fatalf("got %q", b)
	}
}

func TestOpaqueTCPHalfClose(t *testing.T) {
	// The upstream speaks first and half-closes; the client then still sends.
	// Works only if the proxy closes each direction separately.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte("hello"))
		c.(*net.TCPConn).CloseWrite()
		b, _ := io.ReadAll(c)
		received <- len(b)
	}()
	cfg := fmt.Sprintf(`
listeners: [{name: in, address: "127.0.0.1:0", tcpCluster: db, detectTimeout: 100ms}]
clusters: [{name: db, protocol: tcp, endpoints: [{address: "%s"}]}]
`, ln.Addr())
	p := startProxy(t, cfg)
	c, err := net.Dial("tcp", addr(t, p, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	greeting, err := io.ReadAll(c) // until the upstream's half-close arrives
	if err != nil || string(greeting) != "hello" {
		t.Fatalf("greeting %q %v", greeting, err)
	}
	if _, err := c.Write([]byte(strings.Repeat("x", 1000))); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case n := <-received:
		if n != 1000 {
			t.Fatalf("upstream received %d bytes after its half-close, want 1000", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("upstream never saw the client's bytes and EOF")
	}
}

func TestListenerMaxConnections(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	cfg := strings.Replace(simpleConfig(up), "  routeConfig: main\n", "  routeConfig: main\n  limits: {maxConnections: 2}\n", 1)
	p := startProxy(t, cfg)
	a := addr(t, p, "in")
	request := func(c net.Conn) (string, error) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if body, err := request(c); err != nil || body != "ok" {
			t.Fatalf("within the limit: %q %v", body, err)
		}
		held = append(held, c) // stays open (keep-alive)
	}
	third, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := request(third); err == nil {
		t.Fatalf("third connection served (%q) beyond maxConnections 2", body)
	}
	third.Close()
	held[0].Close()
	waitFor(t, "a slot to free up", func() bool {
		c, err := net.Dial("tcp", a)
		if err != nil {
			return false
		}
		defer c.Close()
		body, err := request(c)
		return err == nil && body == "ok"
	})
}
