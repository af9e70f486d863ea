// Package accesslog writes one line per request, as a JSON object (default)
// or as readable text. It is off by default; when on, each line is built in a
// pooled buffer and written with one call. Every input (control bytes,
// invalid UTF-8, quotes) is escaped, so a line is always one valid line.
package accesslog

import (
	"io"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
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
	// PeerIdentity is the SPIFFE ID of an inbound request's mTLS peer; empty for plaintext.
	PeerIdentity string
	Error        string
}

// Format is how a line is written.
type Format int

const (
	JSON Format = iota // one JSON object per line
	Text               // one readable line per request
)

// Logger serialises lines to one writer.
type Logger struct {
	mu     sync.Mutex
	w      io.Writer
	c      io.Closer
	format Format
}

// Open returns a logger for "stdout", "stderr" or a file path (appended).
func Open(path string, format Format) (*Logger, error) {
	switch path {
	case "", "stdout":
		return &Logger{w: os.Stdout, format: format}, nil
	case "stderr":
		return &Logger{w: os.Stderr, format: format}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &Logger{w: f, c: f, format: format}, nil
}

// New logs JSON to w (tests).
func New(w io.Writer) *Logger { return &Logger{w: w} }

// NewText logs text to w (tests).
func NewText(w io.Writer) *Logger { return &Logger{w: w, format: Text} }

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Log writes the entry as one line.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	bp := bufs.Get().(*[]byte)
	b := (*bp)[:0]
	if l.format == Text {
		b = appendText(b, e)
	} else {
		b = appendJSON(b, e)
	}
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	bufs.Put(bp)
}

func appendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"start_time":`...)
	b = jsonString(b, e.Start.UTC().Format(time.RFC3339Nano))
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
	if e.PeerIdentity != "" {
		b = str(b, "peer_identity", e.PeerIdentity)
	}
	if e.Error != "" {
		b = str(b, "error", e.Error)
	}
	return append(b, "}\n"...)
}

func str(b []byte, k, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	b = append(b, '"', ':')
	return jsonString(b, v)
}

const hex = "0123456789abcdef"

// jsonString appends v as a JSON string (RFC 8259): quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced by U+FFFD.
// (strconv.AppendQuote is Go syntax: its \x escapes are not JSON.)
func jsonString(b []byte, v string) []byte {
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' { // valid JSON, but not in JavaScript
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&15])
		} else {
			b = append(b, v[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// appendText writes one readable line, in the spirit of Envoy's default
// format:
//
//	[START] "METHOD PATH PROTOCOL" STATUS grpc=S attempts=N in=B out=B DURATIONms "AUTHORITY" direction route upstream endpoint trace=ID peer=SPIFFE-ID error="..."
//
// Strings are quoted and escaped as JSON strings are, so a line stays one line.
func appendText(b []byte, e *Entry) []byte {
	b = append(b, '[')
	b = e.Start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, "] \""...)
	b = textField(b, e.Method)
	b = append(b, ' ')
	b = textField(b, e.Path)
	b = append(b, ' ')
	b = textField(b, e.Protocol)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	if e.GRPCStatus >= 0 {
		b = append(b, " grpc="...)
		b = strconv.AppendInt(b, int64(e.GRPCStatus), 10)
	}
	b = append(b, " attempts="...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, " in="...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, " out="...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, float64(e.Duration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, "ms "...)
	b = jsonString(b, e.Authority)
	for _, v := range []string{e.Direction, e.Route, e.Upstream, e.Endpoint} {
		b = append(b, ' ')
		if v == "" {
			b = append(b, '-')
		} else {
			b = textField(b, v)
		}
	}
	if e.TraceID != "" {
		b = append(b, " trace="...)
		b = textField(b, e.TraceID)
	}
	if e.PeerIdentity != "" {
		b = append(b, " peer="...)
		b = textField(b, e.PeerIdentity)
	}
	if e.Error != "" {
		b = append(b, " error="...)
		b = jsonString(b, e.Error)
	}
	return append(b, '\n')
}

// textField appends v escaped as inside a JSON string, without the quotes;
// spaces become %20 so fields stay split by single spaces.
func textField(b []byte, v string) []byte {
	q := jsonString(nil, v)
	for _, c := range q[1 : len(q)-1] {
		if c == ' ' {
			b = append(b, "%20"...)
		} else {
			b = append(b, c)
		}
	}
	return b
}

// Close closes a file logger.
func (l *Logger) Close() error {
	if l == nil || l.c == nil {
		return nil
	}
	return l.c.Close()
}
