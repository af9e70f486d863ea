package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// closingUpstream answers one request per connection and then closes it
// without saying so, as an upstream whose keep-alive timeout just fired does.
func closingUpstream(t *testing.T) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

func TestFastPathRetriesStalePooledConnection(t *testing.T) {
	up, conns := closingUpstream(t)
	p := startProxy(t, simpleConfig(up))
	cl := client()
	for i := range 20 {
		if code, body := get(t, cl, "http://"+addr(t, p, "in")+"/"); code != 200 || body != "ok" {
			t.Fatalf("request %d on a stale pooled connection: %d %q", i, code, body)
		}
	}
	if conns.Load() != 20 {
		t.Fatalf("upstream saw %d connections, want 20", conns.Load())
	}
}

func TestFastPathHEADCloseAndExpect(t *testing.T) {
	var upConns atomic.Int64
	s := httpUpstreamServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/head":
			w.Header().Set("Content-Length", "1000")
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s|%s", r.URL.RawQuery, b)
		}
	}, &upConns)
	p := startProxy(t, simpleConfig(s))
	base := "http://" + addr(t, p, "in")
	cl := client()
	resp, err := cl.Head(base + "/head")
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != 1000 {
		t.Fatalf("HEAD: %v %+v", err, resp)
	}
	resp.Body.Close()
	for range 3 {
		if code, body := get(t, cl, base+"/close"); code != 200 || body != "bye" {
			t.Fatalf("close: %d %q", code, body)
		}
	}
	req, _ := http.NewRequest("POST", base+"/echo?a=1&b=%2F", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	resp, err = cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "a=1&b=%2F|payload" {
		t.Fatalf("echo: %q", b)
	}
	// /head (1) + each /close (3 conns) + echo reuses or dials: at least 4 distinct connections.
	if upConns.Load() < 4 {
		t.Fatalf("Connection: close responses were reused: %d connections", upConns.Load())
	}
}

func httpUpstreamServer(t *testing.T, h http.HandlerFunc, conns *atomic.Int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestFastPathSkipsInformationalResponses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 103 Early Hints\r\nLink: </x.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		}
	}()
	p := startProxy(t, simpleConfig(ln.Addr().String()))
	if code, body := get(t, client(), "http://"+addr(t, p, "in")+"/"); code != 200 || body != "final" {
		t.Fatalf("got %d %q", code, body)
	}
}

// allAtOnceClosingUpstream serves the first request of each connection and, once want
// connections are open, closes every one of them on its next request without answering: an
// upstream whose keep-alive connections all end at the same moment (its idle timeout fired
// for connections used together, or it is exiting at SIGTERM) while a request is in flight.
// The first responses wait until want connections are open, so that many sit in the pool.
func allAtOnceClosingUpstream(t *testing.T, want int64) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	allOpen := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if conns.Add(1) == want {
				close(allOpen)
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second)) // a stuck test ends
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				<-allOpen
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				// The next request arrives just as the connection ends: no answer.
				http.ReadRequest(br)
			}()
		}
	}()
	return ln.Addr().String(), &conns
}

func TestStalePooledConnectionIsRetriedOnAFreshConnection(t *testing.T) {
	const pooled = 2
	// At the connection cap, the retry's new connection needs the slot of an idle one.
	for _, cluster := range []string{"", fmt.Sprintf("maxConnectionsPerEndpoint: %d", pooled)} {
		t.Run("cap="+cluster, func(t *testing.T) {
			up, conns := allAtOnceClosingUpstream(t, pooled)
			p := startProxy(t, proxyConfig("", "", cluster, up))
			url := "http://" + addr(t, p, "in") + "/"
			// Two requests at once leave two keep-alive connections in the proxy's pool.
			errs := make(chan error, pooled)
			for range pooled {
				go func() {
					resp, err := client().Get(url)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					errs <- err
				}()
			}
			for range pooled {
				if err := <-errs; err != nil {
					t.Fatalf("filling the pool: %v", err)
				}
			}
			// Every pooled connection is now about to close; the request must still be
			// served, on a connection the upstream has not ended.
			if code, body := get(t, client(), url); code != 200 || body != "ok" {
				t.Fatalf("GET while the upstream closes its pooled connections: %d %q (upstream connections: %d)", code, body, conns.Load())
			}
		})
	}
}
