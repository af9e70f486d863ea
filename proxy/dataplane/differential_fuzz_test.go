package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/knit-mesh/knit/proxy/route"
)

// parsed is a request as net/http read it: at the reference server from the
// client's bytes, or at the upstream from the proxy's.
type parsed struct {
	gen                  int64
	method, host, target string
	header               http.Header
	body                 string
	complete             bool
}

// sendRaw writes data, half-closes, and reads until the server closes.
func sendRaw(t *testing.T, addr string, data []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(data)
	c.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c)
}

// hopByHop are the headers a proxy may drop, add or rewrite (RFC 9110
// §7.6.1), plus what the proxy adds of its own.
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Proxy-Authorization": true, "Proxy-Authenticate": true,
	"Content-Length": true, "Traceparent": true, "Tracestate": true,
}

// FuzzProxyMatchesNetHTTP feeds the same bytes to a plain net/http server
// and to the proxy: a request that reaches the upstream must be one net/http
// read from those bytes, with the same method, target, Host, end-to-end
// headers and body.
func FuzzProxyMatchesNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"GET http://b/x HTTP/1.1\r\nHost: a\r\nConnection: X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\nX-Folded: a\n b\n\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}

	var gen atomic.Int64
	var mu sync.Mutex
	var refGot, upGot []parsed
	history := map[int64][]parsed{} // what net/http read, by input
	record := func(list *[]parsed, p parsed) {
		mu.Lock()
		*list = append(*list, p)
		mu.Unlock()
	}

	ref := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			record(&refGot, parsed{gen.Load(), r.Method, r.Host, r.URL.RequestURI(), r.Header.Clone(), string(b), err == nil})
		}),
		ReadHeaderTimeout: 500 * time.Millisecond,
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	ref.Protocols = &protos
	refLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go ref.Serve(refLn)
	defer ref.Close()

	var active atomic.Int64
	up, _ := rawUpstream(f, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := br.Peek(1); err != nil {
				return
			}
			g := gen.Load()
			active.Add(1)
			req, err := http.ReadRequest(br)
			if err != nil {
				active.Add(-1)
				return
			}
			b, err := io.ReadAll(req.Body)
			record(&upGot, parsed{g, req.Method, req.Host, req.RequestURI, req.Header, string(b), err == nil})
			active.Add(-1)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(f, proxyConfig("protocol: http\n  limits: {readHeaderTimeout: 500ms, requestBodyIdleTimeout: 500ms}",
		"timeout: 2s", "", up))
	proxyAddr := p.ListenerAddr("in").String()

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8<<10 {
			return
		}
		g := gen.Add(1)
		sendRaw(t, refLn.Addr().String(), data)
		sendRaw(t, proxyAddr, data)
		for active.Load() != 0 { // the upstream is still reading what the proxy sent
			runtime.Gosched()
		}
		mu.Lock()
		for _, r := range refGot {
			history[r.gen] = append(history[r.gen], r)
		}
		delete(history, g-historyGens)
		ups := upGot
		refGot, upGot = nil, nil
		mu.Unlock()
		// An upstream request may arrive after its exchange ended (the
		// proxy forwarded it as the client half-closed), so it is matched
		// against what net/http read from the last few inputs.
		for _, u := range ups {
			if !u.complete || u.gen <= g-historyGens {
				continue
			}
			matched, why := false, ""
			for k := u.gen; k > u.gen-historyGens && k > 0 && !matched; k-- {
				for _, r := range history[k] {
					d := differs(r, u)
					if d == "" {
						matched = true
						break
					}
					if why == "" {
						why = d // the closest input's difference
					}
				}
			}
			if !matched {
				if why == "" {
					why = "net/http read no request from the recent inputs"
				}
				t.Fatalf("the upstream received a request net/http did not read: %s\nupstream: %+v", why, u)
			}
		}
	})
}

// historyGens is how many recent inputs an upstream request may come from
// (on a loaded machine a forwarded request can trail its exchange by many).
const historyGens = 64

// differs says how the upstream's request u differs from net/http's r, or "".
func differs(r, u parsed) string {
	if !r.complete {
		return "net/http could not read the body"
	}
	if u.method != r.method || !sameTarget(r.method, r.target, u.target) {
		return fmt.Sprintf("request line %s %s, net/http read %s %s", u.method, u.target, r.method, r.target)
	}
	if r.host != "" && u.host != r.host {
		return fmt.Sprintf("Host %q, net/http read %q", u.host, r.host)
	}
	if u.body != r.body {
		return fmt.Sprintf("body %q, net/http read %q", u.body, r.body)
	}
	dropped := map[string]bool{}
	for _, v := range r.header["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			dropped[textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(tok))] = true
		}
	}
	for k, v := range r.header {
		if !hopByHop[k] && !dropped[k] && !sameFieldValues(u.header[k], v) {
			return fmt.Sprintf("header %s %q, net/http read %q", k, u.header[k], v)
		}
	}
	for k, v := range u.header {
		if !hopByHop[k] && !(k == "User-Agent" && r.header[k] == nil) && !sameFieldValues(r.header[k], v) {
			return fmt.Sprintf("header %s %q, which net/http did not read (%q)", k, v, r.header[k])
		}
	}
	return ""
}

// sameTarget: the upstream gets the target in origin form, with the path
// normalised as routing sees it (route.NormalizePath: "//", "..", "%2F"),
// so the path a policy checks is the path forwarded.
func sameTarget(method, ref, up string) bool {
	if ref == up {
		return true
	}
	u, err := url.ParseRequestURI(ref)
	if err != nil {
		return false
	}
	r := &http.Request{Method: method, URL: u}
	if !route.NormalizePath(r) {
		return false
	}
	return r.URL.RequestURI() == up
}

// sameFieldValues compares field values without their leading and trailing
// whitespace, which is not part of a field value (RFC 9110 §5.5): net/http
// keeps the space an obs-fold leaves at the end ("a \n \n" reads as "a "),
// and the upstream's parse of the forwarded "a " is "a".
func sameFieldValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Trim(a[i], " \t") != strings.Trim(b[i], " \t") {
			return false
		}
	}
	return true
}
