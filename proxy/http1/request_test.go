package http1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// netHTTPRead reads a request as net/http's server does (http.ReadRequest
// plus the server's own checks); ok false: net/http refuses it.
func netHTTPRead(raw []byte) (*http.Request, bool) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil || req.ProtoMajor != 1 {
		return nil, false
	}
	// http.ReadRequest drops Host from the map; the server checks it first.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	tp.ReadLine()
	mh, _ := tp.ReadMIMEHeader()
	hosts, ok := mh["Host"]
	if req.ProtoAtLeast(1, 1) && (!ok || len(hosts) == 0) && req.Method != http.MethodConnect {
		return nil, false
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return nil, false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, false
			}
		}
	}
	delete(req.Header, "Host")
	return req, true
}

// checkSameAsNetHTTP fails when the engine takes a head that net/http would
// refuse or read differently.
func checkSameAsNetHTTP(t *testing.T, raw []byte) (taken bool) {
	n := endOfHead(raw)
	if n <= 0 {
		return false
	}
	var h head
	if !parseHead(raw[:n], &h) {
		return false
	}
	want, ok := netHTTPRead(raw[:n])
	if !ok {
		t.Fatalf("engine takes %q, net/http refuses it", raw[:n])
	}
	if h.method != want.Method || h.target != want.RequestURI || h.host != want.Host ||
		h.url.String() != want.URL.String() || h.contentLength != want.ContentLength || h.close != want.Close {
		t.Fatalf("%q: engine read %s %s host %q length %d close %v; net/http %s %s host %q length %d close %v",
			raw[:n], h.method, &h.url, h.host, h.contentLength, h.close, want.Method, want.URL, want.Host, want.ContentLength, want.Close)
	}
	if !reflect.DeepEqual(h.header, want.Header) {
		t.Fatalf("%q: engine read header %v; net/http %v", raw[:n], h.header, want.Header)
	}
	return true
}

func TestParseHeadTakesOnlyWhatNetHTTPReadsTheSame(t *testing.T) {
	for _, c := range []struct {
		raw  string
		take bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"GET /p/../q?x=%20y HTTP/1.1\r\nhost: a:80\r\nuser-agent: u\r\naccept: */*\r\nX-a: 1\r\nx-A: 2\r\n\r\n", true},
		{"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: keep-alive, close\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: \t v \t\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", true},
		// left to net/http
		{"GET / HTTP/1.0\r\n\r\n", false},
		{"GET / HTTP/1.1\r\n\r\n", false},                          // no Host
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},    // two Hosts
		{"GET http://b/x HTTP/1.1\r\nHost: a\r\n\r\n", false},      // absolute-form
		{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},           // asterisk-form
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", false},   // tunnels
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},                // h2c preface
		{"get / HTTP/1.1\r\nHost: a\r\n\r\n", false},               // method case
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", false}, // obs-fold
		{"GET / HTTP/1.1\r\nHost : a\r\n\r\n", false},              // space before colon
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", false}, // net/http adds Cache-Control
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", false},
		{"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false},
	} {
		raw := []byte(c.raw)
		if got := checkSameAsNetHTTP(t, raw); got != c.take {
			t.Errorf("%q: taken %v, want %v", c.raw, got, c.take)
		}
	}
}

func TestEndOfHeadRefusesBareLineBreaks(t *testing.T) {
	for raw, want := range map[string]int{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest": 27,
		"GET / HTTP/1.1\r\nHost: a\r\n":         0,
		"GET / HTTP/1.1\r\nHost: a\r\n\r":       0,
		"GET / HTTP/1.1\nHost: a\n\n":           -1,
		"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n":  -1,
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n": -1,
	} {
		if got := endOfHead([]byte(raw)); got != want {
			t.Errorf("endOfHead(%q) = %d, want %d", raw, got, want)
		}
	}
}

// FuzzParseHeadMatchesNetHTTP: every head the engine takes, net/http takes
// too and reads the same (method, target, Host, fields, length, close).
func FuzzParseHeadMatchesNetHTTP(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET /%2e%2E/x HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\nX: 1\r\nx: 2\r\n\r\n",
		"DELETE /x HTTP/1.1\r\nHost: a\r\nCookie: a=b; c=d\r\nAccept-Encoding: gzip\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkSameAsNetHTTP(t, raw)
	})
}

func TestPlainPathIsParsedAsParseRequestURIParsesIt(t *testing.T) {
	for _, target := range []string{"/", "/bench", "//a//b", "/a/../b/./c", "/A-z_0.9~/", "/..", "/.well-known/x"} {
		if !plainPath(target) {
			t.Fatalf("%q: not a plain path", target)
		}
		want, err := url.ParseRequestURI(target)
		if err != nil {
			t.Fatal(err)
		}
		if got := (&url.URL{Path: target}); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %#v, url.ParseRequestURI %#v", target, got, want)
		}
	}
	for _, target := range []string{"/a?b", "/a%20b", "/a b", "/a#f", "/a;b", "/a:b", "/a@b", "/a+b"} {
		if plainPath(target) {
			t.Errorf("%q: taken as a plain path", target)
		}
	}
}
