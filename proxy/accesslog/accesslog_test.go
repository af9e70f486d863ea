package accesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestLogIsOneJSONLine(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	l.Log(&Entry{Start: time.Now(), Duration: 1500 * time.Microsecond, Method: "GET", Path: "/a\"b\n",
		Status: 200, GRPCStatus: -1, Route: "r", Upstream: "c", Attempts: 1})
	l.Log(&Entry{Start: time.Now(), Method: "POST", Status: 200, GRPCStatus: 14, TraceID: "abc"})
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %d: %s", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if m["path"] != "/a\"b\n" || m["duration_ms"] != 1.5 || m["status"] != 200.0 {
		t.Fatalf("bad fields: %v", m)
	}
	if _, ok := m["grpc_status"]; ok {
		t.Fatal("grpc_status logged for non-gRPC")
	}
	if err := json.Unmarshal(lines[1], &m); err != nil || m["grpc_status"] != 14.0 || m["trace_id"] != "abc" {
		t.Fatalf("bad second line %v %v", err, m)
	}
}

// hostile are inputs a client controls (path, authority) or that come from
// errors: control bytes, invalid UTF-8, quotes, line breaks, JS separators.
var hostile = []string{
	"/a\x00b", "/\x01\x1f\x7f", "/\xff\xfe", "/caf\xc3", "/\"quoted\"\\", "/line\nbreak\r\n", "\u2028\u2029",
	"/ok/é/日本", "\xed\xa0\x80", // a UTF-16 surrogate encoded in UTF-8 is invalid
}

func TestLogIsValidJSONForEveryInput(t *testing.T) {
	for _, s := range hostile {
		var buf bytes.Buffer
		New(&buf).Log(&Entry{Start: time.Now(), Method: s, Path: s, Authority: s, Error: s, Route: s, GRPCStatus: -1})
		line := buf.Bytes()
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Errorf("%q: not exactly one line: %q", s, line)
		}
		if !json.Valid(line) {
			t.Errorf("%q: invalid JSON: %q", s, line)
			continue
		}
		var m map[string]any
		var want string // what encoding/json makes of it: U+FFFD per invalid byte
		std, _ := json.Marshal(s)
		if err := errors.Join(json.Unmarshal(line, &m), json.Unmarshal(std, &want)); err != nil {
			t.Fatal(err)
		}
		if m["path"] != want {
			t.Errorf("%q: path decodes to %q, want %q", s, m["path"], want)
		}
	}
}

func TestTextFormatIsOneReadableLine(t *testing.T) {
	var buf bytes.Buffer
	l := NewText(&buf)
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Log(&Entry{Start: start, Duration: 1500 * time.Microsecond, Direction: "outbound", Route: "r", Upstream: "c",
		Endpoint: "10.0.0.1:80", Method: "GET", Authority: "app.shop", Path: "/a b", Protocol: "HTTP/1.1",
		Status: 200, GRPCStatus: -1, Attempts: 1, BytesOut: 5})
	want := `[2026-01-02T03:04:05Z] "GET /a%20b HTTP/1.1" 200 attempts=1 in=0 out=5 1.500ms "app.shop" outbound r c 10.0.0.1:80` + "\n"
	if buf.String() != want {
		t.Fatalf("got  %q\nwant %q", buf.String(), want)
	}
	for _, s := range hostile {
		buf.Reset()
		l.Log(&Entry{Start: start, Method: s, Path: s, Authority: s, Error: s, GRPCStatus: 14})
		line := buf.String()
		if strings.Count(line, "\n") != 1 || !utf8.ValidString(line) || strings.ContainsFunc(line[:len(line)-1], func(r rune) bool {
			return r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029'
		}) {
			t.Errorf("%q: not one clean line: %q", s, line)
		}
	}
}

// FuzzLogJSON: whatever the strings, a JSON line is one valid JSON object.
func FuzzLogJSON(f *testing.F) {
	for _, s := range hostile {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, path, errText string) {
		var buf bytes.Buffer
		New(&buf).Log(&Entry{Start: time.Now(), Path: path, Authority: path, Error: errText, GRPCStatus: -1})
		if !json.Valid(buf.Bytes()) || bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
			t.Fatalf("invalid line for %q / %q: %q", path, errText, buf.Bytes())
		}
	})
}

func TestLinesNameTheMTLSPeer(t *testing.T) {
	e := &Entry{Start: time.Unix(0, 0), Method: "GET", Path: "/", Status: 200, GRPCStatus: -1,
		PeerIdentity: "spiffe://cluster.local/ns/shop/sa/cart"}
	var js, text strings.Builder
	New(&js).Log(e)
	NewText(&text).Log(e)
	if !strings.Contains(js.String(), `"peer_identity":"spiffe://cluster.local/ns/shop/sa/cart"`) {
		t.Errorf("JSON line: %s", js.String())
	}
	if !strings.Contains(text.String(), " peer=spiffe://cluster.local/ns/shop/sa/cart") {
		t.Errorf("text line: %s", text.String())
	}
	e.PeerIdentity = ""
	js.Reset()
	New(&js).Log(e)
	if strings.Contains(js.String(), "peer_identity") {
		t.Errorf("plaintext request names a peer: %s", js.String())
	}
}
