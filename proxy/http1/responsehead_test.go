package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// pieces hands out its data a few bytes per Read, so a head arrives in parts.
type pieces struct {
	data []byte
	n    int
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(b), p.n, len(p.data))
	copy(b, p.data[:n])
	p.data = p.data[n:]
	return n, nil
}

// checkResponseSameAsNetHTTP reads raw with ReadResponseHead (arriving piece
// bytes per read, through a buffer of 4 KiB as the upstream pool's) and fails
// when it takes a response that http.ReadResponse refuses or reads
// differently: head, body and the bytes after the body; or when it refuses
// a response but has consumed any of it.
func checkResponseSameAsNetHTTP(t *testing.T, raw []byte, method string, piece int) (taken bool) {
	t.Helper()
	req := &http.Request{Method: method}
	br := bufio.NewReaderSize(&pieces{data: raw, n: piece}, 4096)
	got := new(http.Response)
	bodyLen, ok := ReadResponseHead(br, req, got, make([]string, piece%8)) // room for some fields, or none

	if !ok {
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, raw) {
			t.Fatalf("%q: refused but consumed %d bytes", raw, len(raw)-len(rest))
		}
		return false
	}
	wbr := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	want, err := http.ReadResponse(wbr, req)
	if err != nil {
		t.Fatalf("%q: taken, net/http refuses it: %v", raw, err)
	}
	if got.Status != want.Status || got.StatusCode != want.StatusCode || got.Proto != want.Proto ||
		got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
		got.ContentLength != want.ContentLength || got.Close != want.Close || got.Request != want.Request ||
		want.TransferEncoding != nil || want.Trailer != nil || want.Uncompressed {
		t.Fatalf("%q:\n read %+v\n net/http %+v", raw, got, want)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("%q: header %v, net/http %v", raw, got.Header, want.Header)
	}
	if (bodyLen == 0) != (want.Body == http.NoBody) {
		t.Fatalf("%q: body of %d bytes, net/http's body %T", raw, bodyLen, want.Body)
	}
	if bodyLen == 0 {
		return true
	}
	gotBody, _ := io.ReadAll(io.LimitReader(br, bodyLen))
	wantBody, wantErr := io.ReadAll(want.Body)
	if !bytes.Equal(gotBody, wantBody) {
		t.Fatalf("%q: body %q, net/http %q", raw, gotBody, wantBody)
	}
	if short := int64(len(gotBody)) < bodyLen; short != errors.Is(wantErr, io.ErrUnexpectedEOF) {
		t.Fatalf("%q: body %d of %d bytes, net/http's ends with %v", raw, len(gotBody), bodyLen, wantErr)
	}
	gotRest, _ := io.ReadAll(br)
	wantRest, _ := io.ReadAll(wbr)
	if !bytes.Equal(gotRest, wantRest) {
		t.Fatalf("%q: %q after the body, net/http %q", raw, gotRest, wantRest)
	}
	return true
}

func TestReadResponseHeadTakesOnlyWhatNetHTTPReadsTheSame(t *testing.T) {
	long := "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 5000) + "\r\nContent-Length: 0\r\n\r\n"
	for _, c := range []struct {
		raw    string
		method string
		take   bool
	}{
		{"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nokNEXT", "GET", true},
		{"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\nX-A:  2 \t\r\nset-cookie: a=b\r\n\r\nok", "GET", true},
		{"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"HTTP/1.1 599 odd \x01 reason\r\nContent-Length: 1\r\n\r\nx", "GET", true},
		{"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nConnection: x\r\nContent-Length: 3\r\n\r\nabc", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n1234567", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n", "HEAD", true},
		{"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", "HEAD", true},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nextra", "GET", true},
		{"HTTP/1.1 304 Not Modified\r\nEtag: x\r\n\r\n", "GET", true},
		{"HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", true},

		{"HTTP/1.1 200 OK\r\n\r\nclose-delimited", "GET", false},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "GET", false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 +20 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200\tOK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: a\r\n b\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\n X: a\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\nX: a\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", "GET", false}, // incomplete
		{long, "GET", false},
	} {
		for _, piece := range []int{1, 7, 4096} {
			if got := checkResponseSameAsNetHTTP(t, []byte(c.raw), c.method, piece); got != c.take {
				t.Errorf("%q (%s, %d bytes a read): taken %v, want %v", c.raw, c.method, piece, got, c.take)
			}
		}
	}
}

// FuzzReadResponseHeadMatchesNetHTTP: every response head ReadResponseHead
// takes, http.ReadResponse takes and reads the same (status, fields, length,
// close, body and what follows it); one it refuses is left unread.
func FuzzReadResponseHeadMatchesNetHTTP(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"), false, uint8(4))
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"), false, uint8(1))
	f.Add([]byte("HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n"), true, uint8(200))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"), false, uint8(3))
	f.Add([]byte("HTTP/1.1 200 OK\r\nX: a\r\n\tb\r\nContent-Length: 0\r\n\r\n"), false, uint8(9))
	f.Fuzz(func(t *testing.T, raw []byte, head bool, piece uint8) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		checkResponseSameAsNetHTTP(t, raw, method, int(piece)+1)
	})
}
