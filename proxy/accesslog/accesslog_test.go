package accesslog

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
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
