package http1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// served is what Serve returned for a connection.
type served struct {
	pending   []byte
	handedOff bool
}

func startEngine(t *testing.T, h http.Handler, lim Limits) (string, <-chan served) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan served, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		p, h := NewConn(context.Background(), nc, h, lim, nil).Serve()
		if h {
			nc.Close()
		}
		done <- served{p, h}
	}()
	return ln.Addr().String(), done
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

func TestKeepAliveAndPipelinedRequestsAreAnsweredInOrder(t *testing.T) {
	addr, _ := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Path", r.URL.Path)
		w.Write([]byte(r.Method + " " + r.Host + " " + string(b)))
	}), Limits{})
	c, br := dial(t, addr)
	// two requests in one write, then a third after the answers
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz")
	for _, want := range []string{"GET h ", "POST h xyz"} {
		resp, body := readResponse(t, br, "GET")
		if body != want || resp.ContentLength != int64(len(want)) || resp.Close || resp.Header.Get("Date") == "" {
			t.Fatalf("got %q length %d close %v header %v; want %q with its length, kept open, dated", body, resp.ContentLength, resp.Close, resp.Header, want)
		}
	}
	io.WriteString(c, "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	resp, body := readResponse(t, br, "GET")
	if body != "GET h " || !resp.Close || resp.Header.Get("X-Path") != "/c" {
		t.Fatalf("got %q close %v; want the answer and Connection: close", body, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after Connection: close the server must close; read %v", err)
	}
}

func TestBodylessStatusesAndHEADSendNoBody(t *testing.T) {
	addr, _ := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNotModified)
		default: // HEAD: the length a GET would have
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusOK)
		}
		w.Write([]byte("hello"))
	}), Limits{})
	c, br := dial(t, addr)
	io.WriteString(c, "GET /204 HTTP/1.1\r\nHost: h\r\n\r\nGET /304 HTTP/1.1\r\nHost: h\r\n\r\nHEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET /204 HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, want := range []struct {
		method string
		code   int
		length string
	}{{"GET", 204, ""}, {"GET", 304, ""}, {"HEAD", 200, "5"}, {"GET", 204, ""}} {
		resp, body := readResponse(t, br, want.method)
		if resp.StatusCode != want.code || body != "" || resp.Header.Get("Content-Length") != want.length ||
			(want.code == 304 && resp.Header.Get("Content-Type") != "") {
			t.Fatalf("%s %d: got %d body %q header %v", want.method, want.code, resp.StatusCode, body, resp.Header)
		}
	}
}

func TestUnknownLengthIsChunkedWithTrailers(t *testing.T) {
	big := strings.Repeat("x", 3000) // more than is held for an automatic Content-Length
	addr, _ := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		w.Write([]byte("part one;"))
		w.(http.Flusher).Flush()
		w.Write([]byte(big))
		w.Header().Set("Grpc-Status", "0")
	}), Limits{})
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, body := readResponse(t, br, "GET")
	if body != "part one;"+big || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("body %d bytes, length %d, encoding %v, trailer %v; want it chunked with its trailer", len(body), resp.ContentLength, resp.TransferEncoding, resp.Trailer)
	}
}

func TestUnreadRequestBodyIsDiscardedOrTheConnectionClosed(t *testing.T) {
	addr, _ := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}), Limits{ReadHeaderTimeout: 5 * time.Second})
	c, br := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: h\r\n\r\n")
	for range 2 {
		if resp, body := readResponse(t, br, "GET"); body != "ok" || resp.Close {
			t.Fatalf("small unread body: got %q close %v; want ok and the connection kept", body, resp.Close)
		}
	}
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\n")
	if resp, _ := readResponse(t, br, "GET"); !resp.Close {
		t.Fatal("a large unread body must close the connection")
	}
}

func TestRequestsTheEngineDoesNotServeAreHandedOverUnread(t *testing.T) {
	for _, raw := range []string{
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\nHost: h\n\n",
		"GET / HTTP/1.0\r\n\r\n",
	} {
		addr, done := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t.Errorf("%q reached the engine's handler", raw)
		}), Limits{})
		c, _ := dial(t, addr)
		io.WriteString(c, raw)
		s := <-done
		if !s.handedOff || string(s.pending) != raw {
			t.Errorf("%q: handed off %v with %q; want it handed off with every byte", raw, s.handedOff, s.pending)
		}
	}
}

func TestClientLeavingEndsTheRequestContext(t *testing.T) {
	entered := make(chan struct{})
	ended := make(chan struct{})
	addr, _ := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		close(ended)
	}), Limits{})
	c, _ := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	c.Close()
	<-ended // the test times out if the engine never notices
}

func TestIncompleteHeadIsClosedAfterTheHeaderTimeout(t *testing.T) {
	addr, done := startEngine(t, http.NotFoundHandler(), Limits{ReadHeaderTimeout: 50 * time.Millisecond})
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read %v; want the connection closed without a reply", err)
	}
	if s := <-done; s.handedOff {
		t.Fatal("a timed-out head must not be handed over")
	}
}

func TestAbortedResponseIsCutShortByTheClose(t *testing.T) {
	addr, done := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5000")
		w.Write([]byte(strings.Repeat("x", 3000)))
		panic(http.ErrAbortHandler) // the upstream's body broke
	}), Limits{})
	c, br := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the head that was written must reach the client: %v", err)
	}
	if b, err := io.ReadAll(resp.Body); len(b) != 3000 || err != io.ErrUnexpectedEOF {
		t.Fatalf("read %d bytes, %v; want the 3000 sent and then the connection closed", len(b), err)
	}
	if s := <-done; s.handedOff {
		t.Fatal("an aborted connection must close")
	}
}

// The handler's fields go out in one order, sorted by name as net/http
// writes them, not in the header map's order (which changes every time).
func TestResponseFieldsAreWrittenSortedByName(t *testing.T) {
	names := []string{"X-Knit-07", "Cache-Control", "X-Knit-03", "Server", "X-Knit-11", "Etag", "X-Knit-01",
		"Set-Cookie", "X-Knit-09", "Vary", "X-Knit-05", "Content-Type"}
	addr, _ := startEngine(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range names {
			w.Header()[k] = []string{"1", "2"}
		}
		io.WriteString(w, "ok")
	}), Limits{})
	c, br := dial(t, addr)
	var first []string
	for i := range 20 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		var got []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if line == "\r\n" {
				break
			}
			if name, _, ok := strings.Cut(line, ":"); ok && name != "Date" && name != "Content-Length" {
				got = append(got, name)
			}
		}
		if _, err := br.Discard(len("ok")); err != nil {
			t.Fatal(err)
		}
		if !slices.IsSorted(got) || len(got) != 2*len(names) {
			t.Fatalf("response %d: fields %v, want the handler's %d fields twice each, sorted by name", i, got, len(names))
		}
		if i == 0 {
			first = got
		} else if !slices.Equal(got, first) {
			t.Fatalf("response %d: fields %v, the first response had %v", i, got, first)
		}
	}
}

// countingConn counts the reads made on a connection.
type countingConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// A request whose handler ends quickly costs one read of the client's socket
// (its head): the read that watches for the client leaving starts only for a
// handler still running after watchDelay.
func TestQuickRequestsCostOneReadEach(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan *countingConn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		cc := &countingConn{Conn: nc}
		conns <- cc
		NewConn(context.Background(), cc, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		}), Limits{}, nil).Serve()
	}()
	c, br := dial(t, ln.Addr().String())
	const requests = 40
	for range requests {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	// One more read for each request would be the per-request watching read;
	// a few may still start on a loaded machine (a handler slower than watchDelay).
	if n := (<-conns).reads.Load(); n > requests+requests/4 {
		t.Fatalf("%d reads of the client's socket for %d quick requests; want about one each", n, requests)
	}
}
