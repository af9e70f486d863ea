package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// received is one request as the upstream parsed it.
type received struct {
	method, target, host string
	header               http.Header
	body                 string
	bodyErr              error
}

// recordingUpstream parses what the proxy sends with net/http's reader and
// answers 200 "ok" to each request it could read completely.
func recordingUpstream(t *testing.T) (string, func() []received) {
	var mu sync.Mutex
	var got []received
	up, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, berr := io.ReadAll(req.Body)
			mu.Lock()
			got = append(got, received{req.Method, req.RequestURI, req.Host, req.Header, string(b), berr})
			mu.Unlock()
			if berr != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return up, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

// exchange sends raw bytes and reads the first response (status 0: the
// connection closed without one), then reports whether the proxy closed the
// connection: when it did not, a second request on it must be answered.
func exchange(t *testing.T, proxyAddr, raw string) (status int, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a hang fails, it is not measured
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, true
		}
		t.Fatalf("reading the response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("response said Connection: close but the connection stayed open (%v)", err)
		}
		return resp.StatusCode, true
	}
	io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	next, err := http.ReadResponse(br, nil)
	if err != nil {
		return resp.StatusCode, true
	}
	io.Copy(io.Discard, next.Body)
	if next.StatusCode != 200 {
		t.Fatalf("the request after this one got %d: the connection is out of step", next.StatusCode)
	}
	return resp.StatusCode, false
}

// Every ambiguity in HTTP/1 framing is refused or made unambiguous before
// the upstream sees the request; the upstream never gets a request it would
// read differently from the proxy.
func TestRequestSmugglingCorpus(t *testing.T) {
	noRequest := func(r []received) error {
		if len(r) != 0 {
			return fmt.Errorf("upstream received %d requests, want none: %+v", len(r), r)
		}
		return nil
	}
	oneWithBody := func(body string, mustNotHave ...string) func([]received) error {
		return func(r []received) error {
			if len(r) != 1 {
				return fmt.Errorf("upstream received %d requests, want 1: %+v", len(r), r)
			}
			if r[0].bodyErr != nil || r[0].body != body {
				return fmt.Errorf("upstream body %q (%v), want %q", r[0].body, r[0].bodyErr, body)
			}
			for _, h := range mustNotHave {
				if v, ok := r[0].header[h]; ok {
					return fmt.Errorf("upstream got %s: %q", h, v)
				}
			}
			return nil
		}
	}
	cases := []struct {
		name     string
		raw      string
		status   int  // 0: closed without a response
		close    bool // the proxy closes the client connection afterwards
		upstream func([]received) error
	}{
		{"CL+TE: chunked wins, CL dropped, connection closed",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			200, true, oneWithBody("abc", "Content-Length")},
		{"TE+CL",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			200, true, oneWithBody("abc", "Content-Length")},
		{"duplicate Content-Length with different values",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
			400, true, noRequest},
		{"duplicate Content-Length with the same value",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
			200, false, oneWithBody("abc")},
		{"obs-fold continuation line is unfolded (RFC 9112 §5.2)",
			"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
			200, false, func(r []received) error {
				if len(r) != 1 || len(r[0].header["X-Folded"]) != 1 || r[0].header.Get("X-Folded") != "a b" {
					return fmt.Errorf("upstream got %+v, want one X-Folded: \"a b\"", r)
				}
				return nil
			}},
		{"bare LF line endings",
			"GET / HTTP/1.1\nHost: x\nContent-Length: 3\n\nabc",
			200, false, oneWithBody("abc")},
		{"space before colon",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc",
			400, true, noRequest},
		{"chunk size overflow",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF3\r\nabc\r\n0\r\n\r\n",
			400, true, noRequest},
		// net/http's chunked reader drops extensions unread; the proxy
		// re-chunks the body, so no extension reaches the upstream.
		{"invalid chunk extension is not forwarded",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;\x00=x\r\nabc\r\n0\r\n\r\n",
			200, false, oneWithBody("abc")},
		{"unsupported transfer coding",
			"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			501, true, noRequest},
		{"HTTP/0.9 request line",
			"GET /\r\n\r\n",
			400, true, noRequest},
		{"absolute-form target wins over Host",
			"GET http://a.example/p?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n",
			200, false, func(r []received) error {
				if len(r) != 1 || r[0].host != "a.example" || r[0].target != "/p?q=1" {
					return fmt.Errorf("upstream got %+v, want Host a.example and /p?q=1", r)
				}
				return nil
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up, got := recordingUpstream(t)
			// net/http waits for 24 bytes (the h2c preface) or the header
			// timeout before parsing a shorter request such as HTTP/0.9's.
			p := startProxy(t, proxyConfig("protocol: http\n  limits: {readHeaderTimeout: 1s}", "", "", up))
			status, closed := exchange(t, addr(t, p, "in"), tc.raw)
			if status != tc.status || closed != tc.close {
				t.Fatalf("got status %d, closed %v; want %d, closed %v", status, closed, tc.status, tc.close)
			}
			r := got()
			if !tc.close && len(r) > 0 && r[len(r)-1].target == "/next" {
				r = r[:len(r)-1] // the follow-up request
			}
			if err := tc.upstream(r); err != nil {
				t.Fatal(err)
			}
			if tc.name == "chunk size overflow" {
				waitFor(t, "the bad body counted", func() bool {
					return metricValue(t, p, "knit_request_failures_total", `reason="bad_request_body"`) == "1"
				})
			}
		})
	}
}

// A sniffed (auto) listener and a TLS-less passthrough connection get the
// same CL+TE treatment as an http listener.
func TestContentLengthWithTransferEncodingClosesOnAutoListener(t *testing.T) {
	up, got := recordingUpstream(t)
	p := startProxy(t, proxyConfig("", "", "", up))
	status, closed := exchange(t, addr(t, p, "in"),
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	if status != 200 || !closed {
		t.Fatalf("status %d closed %v; want 200 and the connection closed", status, closed)
	}
	if r := got(); len(r) != 1 || r[0].body != "abc" || r[0].header.Get("Content-Length") != "" {
		t.Fatalf("upstream got %+v", r)
	}
	_ = strings.TrimSpace
}
