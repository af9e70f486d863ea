package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzH1WriteRequest: whatever the fast path agrees to write is one request
// that net/http reads back with the same method, target, Host, headers and
// body, and nothing after it (no second request smuggled in a value).
func FuzzH1WriteRequest(f *testing.F) {
	f.Add("GET", "/a?b=c", "example.com", "X-A", "1", []byte(nil), false)
	f.Add("POST", "/upload", "h:8080", "Content-Type", "text/plain", []byte("hello"), false)
	f.Add("PUT", "/x", "h", "X-B", "v\r\nX-Evil: 1", []byte("body"), true)
	f.Add("GET", "/p%2Fq", "h", "Transfer-Encoding", "chunked", []byte("0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, method, target, host, key, value string, body []byte, chunked bool) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{}, ContentLength: int64(len(body))}
		req.Header[key] = []string{value}
		if len(body) > 0 {
			req.Body = io.NopCloser(bytes.NewReader(body))
			if chunked {
				req.ContentLength = -1
			}
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		cr := &countingReader{}
		if req.Body != nil {
			cr.r = req.Body
		}
		if err := writeRequest(bw, req, cr, "upstream:80"); err != nil {
			return // refused: fine
		}
		wire := out.String()
		br := bufio.NewReader(strings.NewReader(wire))
		got, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("wrote a request net/http cannot read: %v\n%q", err, wire)
		}
		gotBody, err := io.ReadAll(got.Body)
		if err != nil {
			t.Fatalf("body does not parse back: %v\n%q", err, wire)
		}
		if br.Buffered() > 0 {
			t.Fatalf("bytes after the request (a second request?): %q\n%q", wire[len(wire)-br.Buffered():], wire)
		}
		if got.Method != method {
			t.Fatalf("method %q, wrote %q", got.Method, method)
		}
		wantHost := host
		if wantHost == "" {
			wantHost = "upstream:80"
		}
		if got.Host != wantHost {
			t.Fatalf("Host %q, wrote %q\n%q", got.Host, wantHost, wire)
		}
		if !bytes.Equal(gotBody, body) {
			t.Fatalf("body %q, wrote %q", gotBody, body)
		}
		ck := http.CanonicalHeaderKey(key)
		switch ck {
		case "Host", "Content-Length", "Expect", "Transfer-Encoding", "Trailer":
			return // framing headers: decided by the writer, not copied
		}
		if key == ck { // a non-canonical key is written as is and read back canonical
			if v := got.Header.Values(ck); len(v) != 1 || v[0] != strings.Trim(value, " \t") {
				t.Fatalf("header %s = %q, wrote %q\n%q", ck, v, value, wire)
			}
		}
	})
}

// FuzzH1ReadResponse: whatever an upstream sends, the fast path returns an
// error or a response, never hangs past its deadline, never panics, and
// never hands out a pooled connection that still holds bytes the upstream
// sent.
func FuzzH1ReadResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), false, true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), false, true)
	f.Add([]byte("HTTP/1.1 204 No Content\r\n\r\nextra"), false, true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"), true, false)
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), false, true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"), false, false)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	type answer struct {
		data     []byte
		keepOpen bool
	}
	var current atomic.Pointer[answer] // what the next accepted connection is sent
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a := *current.Load()
			go func() {
				// Read the request head, answer with the input, keep the
				// connection open until the client closes it.
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil || l == "\r\n" {
						break
					}
				}
				c.Write(a.data)
				if a.keepOpen {
					io.Copy(io.Discard, br)
				}
				c.Close()
			}()
		}
	}()
	addr := ln.Addr().String()

	f.Fuzz(func(t *testing.T, data []byte, head, keepOpen bool) {
		if len(data) > 16<<10 {
			return
		}
		pool := newH1Pool(&net.Dialer{Timeout: time.Second}, 4, 4, time.Minute, 4<<10)
		defer pool.closeIdle()
		c := &Cluster{h1: pool}
		method := "GET"
		if head {
			method = "HEAD"
		}
		req, _ := http.NewRequest(method, "http://"+addr+"/", nil)
		// An open connection with a short body ends only at the deadline:
		// keep it short so such inputs do not stall the fuzzer.
		deadline := time.Now().Add(2 * time.Second)
		if keepOpen {
			deadline = time.Now().Add(10 * time.Millisecond)
		}
		current.Store(&answer{data, keepOpen})
		resp, err := c.RoundTripH1(req, addr, deadline)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if time.Now().After(deadline.Add(time.Second)) {
			t.Fatalf("the exchange outlived its deadline")
		}
		current.Store(&answer{keepOpen: true}) // a fresh connection serves nothing
		pc, reused, err := pool.get(context.Background(), addr, time.Now().Add(time.Second), false)
		if err != nil {
			return
		}
		if reused && pc.read != int64(len(data)) {
			t.Fatalf("a pooled connection was reused with %d of %d upstream bytes unread", int64(len(data))-pc.read, len(data))
		}
		pool.discard(pc)
		pool.mu.Lock()
		open := pool.hosts[addr]
		pool.mu.Unlock()
		if open != nil && open.open < 0 {
			t.Fatalf("connection count went negative: %d", open.open)
		}
	})
	ln.Close()
	wg.Wait()
}
