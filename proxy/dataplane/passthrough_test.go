package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
)

// passthroughYAML is the sidecar's two listeners with a 200 ms detection timeout, which the
// mutual TLS tests of a peer that detected too early rely on.
var passthroughYAML = fmt.Sprintf(passthroughYAMLFormat, 200*time.Millisecond)

// passthroughYAMLFormat takes the listeners' detection timeout.
const passthroughYAMLFormat = `
listeners:
- {name: inbound, address: "127.0.0.1:0", direction: inbound, originalDestination: true, detectTimeout: %[1]s}
- {name: outbound, address: "127.0.0.1:0", direction: outbound, originalDestination: true, detectTimeout: %[1]s}
`

// startPassthrough runs the sidecar's listeners on loopback; the original
// destination of every connection is whatever *dst holds (no NAT needed).
func startPassthrough(t testing.TB) (*Proxy, *atomic.Pointer[netip.AddrPort]) {
	t.Helper()
	return startPassthroughDetecting(t, patientDetectTimeout)
}

// startPassthroughDetecting is startPassthrough with the listeners' detection timeout: short only
// where a test needs it to time out (a server that speaks first), else patientDetectTimeout.
func startPassthroughDetecting(t testing.TB, detect time.Duration) (*Proxy, *atomic.Pointer[netip.AddrPort]) {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(passthroughYAMLFormat, detect)))
	if err != nil {
		t.Fatal(err)
	}
	var dst atomic.Pointer[netip.AddrPort]
	p := New(logr.Discard(), metrics.New())
	p.OriginalDst = func(net.Conn) (netip.AddrPort, error) {
		d := dst.Load()
		if d == nil {
			return netip.AddrPort{}, errors.New("no original destination")
		}
		return *d, nil
	}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	})
	return p, &dst
}

func setDst(dst *atomic.Pointer[netip.AddrPort], addr string) netip.AddrPort {
	a := netip.MustParseAddrPort(addr)
	dst.Store(&a)
	return a
}

func TestPassthroughHTTPKeepsHostAndCountsByDirection(t *testing.T) {
	p, dst := startPassthrough(t)
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Host + " " + r.URL.Path))
	})
	d := setDst(dst, up)
	for _, l := range []string{"inbound", "outbound"} {
		req, _ := http.NewRequest("GET", "http://"+addr(t, p, l)+"/hello", nil)
		req.Host = "app.shop.svc"
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "app.shop.svc /hello" {
			t.Fatalf("%s: %d %q", l, resp.StatusCode, body)
		}
	}
	port := d.Port()
	for _, dir := range []string{"inbound", "outbound"} {
		if v := metricValue(t, p, "knit_requests_total{", `direction="`+dir+`"`, `upstream="`+dir+"|"+itoa(port)+`"`, `code="200"`); v != "1" {
			t.Errorf("%s requests metric = %q, want 1\n%s", dir, v, scrape(t, p))
		}
	}
}

func TestPassthroughH2C(t *testing.T) {
	p, dst := startPassthrough(t)
	up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Proto))
	}))
	setDst(dst, up)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &protos}}
	code, body := get(t, c, "http://"+addr(t, p, "outbound")+"/")
	if code != 200 || body != "HTTP/2.0" {
		t.Fatalf("%d %q", code, body)
	}
}

func TestPassthroughOpaqueTCP(t *testing.T) {
	p, dst := startPassthroughDetecting(t, 200*time.Millisecond)
	// An echo server, and a server that speaks first.
	echo := tcpServer(t, func(c net.Conn) { io.Copy(c, c) })
	banner := tcpServer(t, func(c net.Conn) { c.Write([]byte("220 smtp ready\r\n")); io.Copy(io.Discard, c) })

	setDst(dst, echo)
	c, err := net.Dial("tcp", addr(t, p, "outbound"))
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("\x00\x01binary protocol")
	c.Write(msg)
	buf := make([]byte, len(msg))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != string(msg) {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.Close()

	setDst(dst, banner)
	c, err = net.Dial("tcp", addr(t, p, "inbound"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 16)
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "220 smtp ready\r\n" {
		t.Fatalf("banner: %q %v", line, err)
	}
	waitFor(t, "tcp metrics", func() bool {
		return metricValue(t, p, "knit_tcp_connections_opened_total{", `upstream="outbound|`) == "1" &&
			metricValue(t, p, "knit_tcp_connections_opened_total{", `upstream="inbound|`) == "1"
	})
}

// A TLS client (mTLS comes later) is passed through untouched.
func TestPassthroughTLSIsOpaque(t *testing.T) {
	p, dst := startPassthrough(t)
	ts := tlsUpstream(t)
	setDst(dst, ts)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	code, body := get(t, c, "https://"+addr(t, p, "outbound")+"/")
	if code != 200 || body != "tls ok" {
		t.Fatalf("%d %q", code, body)
	}
}

func TestPassthroughRefusesLoopsAndUnknownDestinations(t *testing.T) {
	p, dst := startPassthrough(t)
	for _, tc := range []struct {
		name string
		set  func()
	}{
		{"no original destination", func() { dst.Store(nil) }},
		{"destination is the listener itself", func() { setDst(dst, addr(t, p, "outbound")) }},
	} {
		tc.set()
		c, err := net.Dial("tcp", addr(t, p, "outbound"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		b, err := io.ReadAll(c)
		c.Close()
		if len(b) != 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
			t.Errorf("%s: got %q, %v; want the connection closed", tc.name, b, err)
		}
	}
}

func tcpServer(t testing.TB, serve func(net.Conn)) string {
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
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return ln.Addr().String()
}

func tlsUpstream(t *testing.T) string {
	t.Helper()
	certFile, keyFile, _ := writeCert(t, t.TempDir(), "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("tls ok")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
