// Package accesslog writes one JSON line per request. It is off by default;
// when on, each line is built in a pooled buffer and written with one call.
package accesslog

import (
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// Entry is what one line records.
type Entry struct {
	Start      time.Time
	Duration   time.Duration
	Direction  string
	Route      string
	Upstream   string
	Endpoint   string
	Method     string
	Authority  string
	Path       string
	Protocol   string
	Status     int
	GRPCStatus int // -1 when not gRPC
	Attempts   int
	BytesIn    int64
	BytesOut   int64
	TraceID    string
	Error      string
}

// Logger serialises lines to one writer.
type Logger struct {
	mu sync.Mutex
	w  io.Writer
	c  io.Closer
}

// Open returns a logger for "stdout", "stderr" or a file path (appended).
func Open(path string) (*Logger, error) {
	switch path {
	case "", "stdout":
		return &Logger{w: os.Stdout}, nil
	case "stderr":
		return &Logger{w: os.Stderr}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &Logger{w: f, c: f}, nil
}

// New logs to w (tests).
func New(w io.Writer) *Logger { return &Logger{w: w} }

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Log writes the entry as one JSON object on one line.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	bp := bufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"start_time":`...)
	b = strconv.AppendQuote(b, e.Start.UTC().Format(time.RFC3339Nano))
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration.Microseconds())/1000, 'f', 3, 64)
	b = str(b, "direction", e.Direction)
	b = str(b, "route", e.Route)
	b = str(b, "upstream", e.Upstream)
	b = str(b, "endpoint", e.Endpoint)
	b = str(b, "method", e.Method)
	b = str(b, "authority", e.Authority)
	b = str(b, "path", e.Path)
	b = str(b, "protocol", e.Protocol)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	if e.GRPCStatus >= 0 {
		b = append(b, `,"grpc_status":`...)
		b = strconv.AppendInt(b, int64(e.GRPCStatus), 10)
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"bytes_received":`...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	if e.TraceID != "" {
		b = str(b, "trace_id", e.TraceID)
	}
	if e.Error != "" {
		b = str(b, "error", e.Error)
	}
	b = append(b, "}\n"...)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	bufs.Put(bp)
}

func str(b []byte, k, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	b = append(b, '"', ':')
	return strconv.AppendQuote(b, v)
}

// Close closes a file logger.
func (l *Logger) Close() error {
	if l == nil || l.c == nil {
		return nil
	}
	return l.c.Close()
}
