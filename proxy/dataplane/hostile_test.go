package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
)

// proxyConfig is one listener → route → cluster, with extra YAML for each
// (flow-style fields, e.g. "limits: {requestBodyIdleTimeout: 1s}").
func proxyConfig(listenerExtra, routeExtra, clusterExtra string, endpoints ...string) string {
	eps := ""
	for _, e := range endpoints {
		eps += fmt.Sprintf("\n  - address: %s", e)
	}
	return fmt.Sprintf(`
listeners:
- name: in
  address: 127.0.0.1:0
  routeConfig: main
  %s
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - name: default
      clusters: [{name: c}]
      %s
clusters:
- name: c
  %s
  endpoints:%s
`, listenerExtra, routeExtra, clusterExtra, eps)
}

// rawUpstream serves each accepted connection with serve, counting connections.
func rawUpstream(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close() // pooled by the proxy: would block serve forever
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			mu.Lock()
			open[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

// h2cClient speaks HTTP/2 with prior knowledge to the proxy's plaintext listener.
func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}}
}

// The upstream's body breaks part-way; the client must not see a complete
// response, and the request must be counted as a failure with its reason.
func TestTruncatedUpstreamBodyReachesClientAsFailure(t *testing.T) {
	cases := []struct {
		name     string
		response string // sent, then the upstream closes the connection
	}{
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello"},
	}
	for _, tc := range cases {
		for _, proto := range []string{"http1", "h2c"} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				up, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					io.WriteString(c, tc.response)
				})
				p := startProxy(t, proxyConfig("", "", "", up))
				cl := client()
				if proto == "h2c" {
					cl = h2cClient()
				}
				resp, err := cl.Get("http://" + addr(t, p, "in") + "/")
				if err == nil {
					var body []byte
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil {
						t.Fatalf("client read a complete response %d %q from a truncated upstream body", resp.StatusCode, body)
					}
				}
				waitFor(t, "the failure to be counted", func() bool {
					return metricValue(t, p, "knit_request_failures_total", `reason="upstream_reset"`) == "1"
				})
				if v := metricValue(t, p, "knit_requests_total", `classification="failure"`); v != "1" {
					t.Fatalf("knit_requests_total failure = %q, want 1\n%s", v, scrape(t, p))
				}
				if v := metricValue(t, p, "knit_requests_total", `classification="success"`); v != "" {
					t.Fatalf("a truncated response was counted as a success")
				}
			})
		}
	}
}

// An HTTP/2 upstream that resets the stream mid-body: the client sees a reset too.
func TestUpstreamStreamResetReachesClient(t *testing.T) {
	up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // RST_STREAM
	}))
	p := startProxy(t, proxyConfig("", "", "protocol: http2", up))
	for _, cl := range []*http.Client{client(), h2cClient()} {
		resp, err := cl.Get("http://" + addr(t, p, "in") + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatal("client saw a complete response although the upstream reset the stream")
		}
	}
	waitFor(t, "failures counted", func() bool {
		return metricValue(t, p, "knit_request_failures_total", `reason="upstream_reset"`) == "2"
	})
}

// misbehavingUpstream answers every request on a connection per how(i) for
// the i-th request (counted across connections), and counts requests that
// arrived on a connection after a /dirty response.
func misbehavingUpstream(t *testing.T, how func(req *http.Request, i int) string) (string, *atomic.Int64, *atomic.Int64) {
	var n, reused atomic.Int64
	up, conns := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		dirty := false
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if dirty {
				reused.Add(1)
			}
			dirty = req.URL.Path == "/dirty"
			io.WriteString(c, how(req, int(n.Add(1))))
		}
	})
	_ = conns
	return up, &n, &reused
}

// A connection with bytes beyond the response is not reused: the next
// client must get its own response, not the leftover.
func TestPooledConnectionReusedOnlyWhenClean(t *testing.T) {
	cases := []struct {
		name, method, dirty string
	}{
		{"body on HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\nHTTP/1.1 200 OK\r\nX-Stale: 1\r\n\r\n"},
		{"body on 204", "GET", "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"},
		{"body on 304", "GET", "HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"},
		{"over-sent body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const good = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"
			up, _, reused := misbehavingUpstream(t, func(req *http.Request, i int) string {
				if req.URL.Path == "/dirty" {
					return tc.dirty
				}
				return good
			})
			p := startProxy(t, proxyConfig("", "", "", up))
			base := "http://" + addr(t, p, "in")
			cl := client()
			for i := range 5 {
				req, _ := http.NewRequest(tc.method, base+"/dirty", nil)
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatalf("dirty request %d: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code, body := get(t, cl, base+"/clean")
				if code != 200 || body != "fresh" {
					t.Fatalf("request after a dirty response got %d %q (another response's bytes)", code, body)
				}
			}
			if reused.Load() != 0 {
				t.Fatalf("the proxy sent %d requests on connections that had unread bytes", reused.Load())
			}
		})
	}
}

// The upstream closes every connection right after its response, without
// saying so. The proxy must notice before reuse, so even POSTs (never
// retried once sent) succeed.
func TestServerClosedIdleConnectionNotUsedForPOST(t *testing.T) {
	closed := make(chan struct{}, 100)
	var perConn sync.Map
	up, conns := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		perConn.Store(c.RemoteAddr().String(), true)
		c.Close()
		closed <- struct{}{}
	})
	p := startProxy(t, proxyConfig("", "", "", up))
	cl := client()
	for i := range 10 {
		body := fmt.Sprintf("post-%d", i)
		resp, err := cl.Post("http://"+addr(t, p, "in")+"/", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != body {
			t.Fatalf("POST %d on a connection the server had closed: %d %q", i, resp.StatusCode, got)
		}
		<-closed // the server's FIN is sent before the next request
	}
	if conns.Load() != 10 {
		t.Fatalf("upstream saw %d connections for 10 requests", conns.Load())
	}
}

// A POST whose bytes reached a connection that then broke is not sent again:
// the server may have acted on it.
func TestPOSTNotRetriedAfterBytesWereSent(t *testing.T) {
	var posts atomic.Int64
	up, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.Method == "POST" {
				posts.Add(1)
				return // close without an answer
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, proxyConfig("", "", "", up))
	cl := client()
	if code, _ := get(t, cl, "http://"+addr(t, p, "in")+"/"); code != 200 {
		t.Fatalf("warm-up GET: %d", code)
	}
	resp, err := cl.Post("http://"+addr(t, p, "in")+"/", "text/plain", strings.NewReader("pay once"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("POST to an upstream that closed mid-request: %d, want 502", resp.StatusCode)
	}
	if posts.Load() != 1 {
		t.Fatalf("upstream received the POST %d times, want once", posts.Load())
	}
}

// Pooled connections idle longer than the cluster's idleTimeout are not used.
func TestUpstreamIdleTimeoutIsConfigurable(t *testing.T) {
	idleTimeoutGiven := make(chan struct{})
	up, conns := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, proxyConfig("", "", "idleTimeout: 1ns", up))
	cl := client()
	for range 3 {
		if code, _ := get(t, cl, "http://"+addr(t, p, "in")+"/"); code != 200 {
			t.Fatal(code)
		}
	}
	close(idleTimeoutGiven)
	if conns.Load() != 3 {
		t.Fatalf("with idleTimeout 1ns the upstream saw %d connections for 3 requests, want 3", conns.Load())
	}
	// The default keeps them.
	up2, conns2 := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p2 := startProxy(t, proxyConfig("", "", "", up2))
	for range 3 {
		get(t, cl, "http://"+addr(t, p2, "in")+"/")
	}
	if conns2.Load() != 1 {
		t.Fatalf("default idle timeout: %d connections for 3 sequential requests, want 1", conns2.Load())
	}
}

// An upstream's response header block is limited like a request's.
func TestUpstreamResponseHeadersAreLimited(t *testing.T) {
	val := strings.Repeat("x", 500)
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for i := range 200 { // 100 KiB in all
					w.Header().Set(fmt.Sprintf("X-Big-%d", i), val)
				}
				w.Write([]byte("ok"))
			})
			var up string
			if proto == "http1" {
				up = httpUpstream(t, h)
			} else {
				up = h2cUpstream(t, h)
			}
			p := startProxy(t, proxyConfig("", "", "protocol: "+proto, up))
			if code, _ := get(t, client(), "http://"+addr(t, p, "in")+"/"); code != http.StatusBadGateway {
				t.Fatalf("100 KiB of response headers: %d, want 502", code)
			}
			// net/http's HTTP/2 client reports an oversized header block only
			// as a PROTOCOL_ERROR of the connection, so the reason is HTTP/1's.
			if v := metricValue(t, p, "knit_request_failures_total", `reason="upstream_headers_too_large"`); proto == "http1" && v != "1" {
				t.Fatalf("failure reason not counted: %q", v)
			}
			p2 := startProxy(t, proxyConfig("", "", "protocol: "+proto+"\n  maxResponseHeaderBytes: 204800", up))
			if code, body := get(t, client(), "http://"+addr(t, p2, "in")+"/"); code != 200 || body != "ok" {
				t.Fatalf("with a raised limit: %d %q", code, body)
			}
		})
	}
}

var _ = bytes.Equal
