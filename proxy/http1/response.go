package http1

import (
	"bufio"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The response side follows net/http's rules for what it writes (status
// line, Date, Content-Type sniffing, automatic Content-Length for a body
// that fits before the handler returns, chunking otherwise, suppressed
// fields and no body for HEAD, 1xx, 204 and 304, trailers, Connection:
// close), so a client sees what it saw from net/http, fields sorted by name
// as net/http sorts them.

// bufferBeforeChunking is how much body is held before the head is written,
// so a small body gets a Content-Length (net/http holds as much).
const bufferBeforeChunking = 2048

// maxDiscard is the most of an unread request body read after the handler to
// keep the connection (net/http's maxPostHandlerReadBytes).
const maxDiscard = 256 << 10

// response is the http.ResponseWriter of one request, reused by the
// connection for the next one.
type response struct {
	c    *Conn
	req  *http.Request
	body *body
	hdr  http.Header // reused: cleared after each request

	status      int
	wroteHeader bool // WriteHeader was called: fields are frozen in fields
	wroteHead   bool // the head is in the write buffer
	fields      []byte
	hasCL       bool
	contentLen  int64
	hasType     bool
	hasEncoding bool
	hasDate     bool
	closeAsked  bool     // the handler set Connection: close
	trailers    []string // declared in Trailer, canonical
	sorted      []field  // the header's fields, sorted by name (reused)
	prefixed    bool     // the map has "Trailer:"-prefixed keys

	chunked   bool
	closeConn bool
	written   int64
	pending   []byte // body held before the head is written
	failed    error  // a write to the client failed
}

func (w *response) reset(req *http.Request, b *body) {
	if w.hdr == nil {
		w.hdr = make(http.Header, 8)
	} else {
		clear(w.hdr)
	}
	clear(w.sorted) // the last response's values: not kept alive by an idle connection
	*w = response{c: w.c, req: req, body: b, hdr: w.hdr, fields: w.fields[:0], pending: w.pending[:0],
		trailers: w.trailers[:0], sorted: w.sorted[:0]}
}

// field is one name of the header with its values.
type field struct {
	name   string
	values []string
}

func (w *response) Header() http.Header { return w.hdr }

// WriteHeader freezes the fields as they are now (as net/http clones them),
// except trailers, which are read at the end.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("http1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		return // informational: the proxy never relays one
	}
	w.wroteHeader, w.status = true, code
	// Sorted by name, as net/http writes them: the map's order changes from
	// one response to the next.
	sorted := w.sorted[:0]
	for k, vv := range w.hdr {
		sorted = append(sorted, field{k, vv})
	}
	slices.SortFunc(sorted, func(a, b field) int { return strings.Compare(a.name, b.name) })
	w.sorted = sorted
	for _, f := range sorted {
		k, vv := f.name, f.values
		switch k {
		case "Content-Length":
			if len(vv) > 0 {
				if n, err := strconv.ParseInt(vv[0], 10, 64); err == nil && n >= 0 {
					w.hasCL, w.contentLen = true, n
				}
			}
			continue
		case "Transfer-Encoding":
			continue // the writer frames the body itself
		case "Connection":
			for _, v := range vv {
				if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
					w.closeAsked = true
				}
			}
			continue
		case "Content-Type":
			if code == http.StatusNotModified {
				continue // suppressed, as net/http does
			}
			w.hasType = true
		case "Content-Encoding":
			w.hasEncoding = len(vv) > 0 && vv[0] != ""
		case "Date":
			w.hasDate = true
		case "Trailer":
			for _, v := range vv {
				for _, t := range strings.Split(v, ",") {
					if t = strings.TrimSpace(t); t != "" {
						w.trailers = append(w.trailers, http.CanonicalHeaderKey(t))
					}
				}
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			w.prefixed = true
			continue
		}
		w.fields = appendField(w.fields, k, vv)
	}
}

// appendField writes one field as net/http does: invalid names are dropped,
// line breaks in values become spaces.
func appendField(b []byte, k string, vv []string) []byte {
	if !validFieldName(k) {
		return b
	}
	for _, v := range vv {
		b = append(b, k...)
		b = append(b, ": "...)
		start := len(b)
		b = append(b, v...)
		if strings.IndexByte(v, '\r') >= 0 || strings.IndexByte(v, '\n') >= 0 {
			for i := start; i < len(b); i++ {
				if b[i] == '\r' || b[i] == '\n' {
					b[i] = ' '
				}
			}
		}
		b = append(b, "\r\n"...)
	}
	return b
}

// validFieldName is httpguts.ValidHeaderFieldName by table.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenByte[k[i]] {
			return false
		}
	}
	return true
}

func (w *response) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified && w.status >= 200
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.hasCL && w.written > w.contentLen {
		return 0, http.ErrContentLength
	}
	if w.failed != nil {
		return 0, w.failed
	}
	if !w.wroteHead {
		if len(w.pending)+len(p) <= bufferBeforeChunking {
			w.pending = append(w.pending, p...)
			return len(p), nil
		}
		w.writeHead(false, p)
	}
	if w.req.Method == http.MethodHead {
		return len(p), nil
	}
	w.writeBody(p)
	if w.failed != nil {
		return 0, w.failed
	}
	return len(p), nil
}

func (w *response) writeBody(p []byte) {
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, err := bw.WriteString("\r\n")
		w.fail(err)
		return
	}
	_, err := bw.Write(p)
	w.fail(err)
}

func (w *response) fail(err error) {
	if err != nil && w.failed == nil {
		w.failed = err
		w.closeConn = true
	}
}

// writeHead puts the status line and fields in the write buffer, then the
// held body; done: the handler has returned (so a held body's length is
// the body's length). next is the write that made the held body too long.
func (w *response) writeHead(done bool, next []byte) {
	w.wroteHead = true
	isHEAD := w.req.Method == http.MethodHead
	bw := w.c.bw
	bw.WriteString(statusLine(w.status))
	bw.Write(w.fields)

	hasTrailers := len(w.trailers) > 0 || w.prefixed
	if done && !hasTrailers && w.bodyAllowed() && !w.hasCL && (!isHEAD || len(w.pending) > 0) {
		w.hasCL, w.contentLen = true, int64(len(w.pending))
	}
	if w.req.Close || w.closeAsked || (w.c.closing != nil && w.c.closing()) {
		w.closeConn = true
	}
	// An unread request body: read it now (a client may send all of it before
	// reading the response), or close when it is too long.
	if b := w.body; b != nil && !w.closeConn && !b.discard(maxDiscard) {
		w.closeConn = true
	}
	if w.bodyAllowed() {
		if !w.hasType && !w.hasEncoding {
			sniff := w.pending
			if len(sniff) == 0 {
				sniff = next
			}
			if len(sniff) > 0 {
				bw.WriteString("Content-Type: ")
				bw.WriteString(http.DetectContentType(sniff))
				bw.WriteString("\r\n")
			}
		}
	}
	if !w.hasDate {
		bw.WriteString("Date: ")
		bw.Write(date())
		bw.WriteString("\r\n")
	}
	switch {
	case !w.bodyAllowed(): // 204, 304: no length, no body
	case isHEAD:
		if w.hasCL {
			writeLength(bw, w.contentLen) // the length a GET would have had
		}
	case w.hasCL:
		writeLength(bw, w.contentLen)
	default:
		w.chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeConn {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if len(w.pending) > 0 && !isHEAD {
		w.writeBody(w.pending)
	}
}

func writeLength(bw *bufio.Writer, n int64) {
	bw.WriteString("Content-Length: ")
	// The buffer's free space: a local array would escape through Write.
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), n, 10))
	bw.WriteString("\r\n")
}

// finish completes the response once the handler has returned; false: the
// connection must close.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHead {
		w.writeHead(true, nil)
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			w.fields = appendField(w.fields[:0], k, w.hdr[k])
			bw.Write(w.fields)
		}
		if w.prefixed {
			for k, vv := range w.hdr {
				if strings.HasPrefix(k, http.TrailerPrefix) {
					w.fields = appendField(w.fields[:0], k[len(http.TrailerPrefix):], vv)
					bw.Write(w.fields)
				}
			}
		}
		bw.WriteString("\r\n")
	}
	w.fail(bw.Flush())
	if w.hasCL && w.bodyAllowed() && w.req.Method != http.MethodHead && w.written != w.contentLen {
		w.closeConn = true // the body the head announced was not all sent
	}
	return !w.closeConn
}

// Flush sends what is buffered; a body of unknown length is chunked from here on.
func (w *response) Flush() { _ = w.FlushError() }

func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHead {
		w.writeHead(false, nil)
	}
	w.fail(w.c.bw.Flush())
	return w.failed
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController (the
// request body's idle timeout).
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.nc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.nc.SetWriteDeadline(t) }

var statusLines [600]string

func init() {
	for code := 100; code < len(statusLines); code++ {
		text := http.StatusText(code)
		if text == "" {
			text = "status code " + strconv.Itoa(code)
		}
		statusLines[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
	}
}

func statusLine(code int) string {
	if code < len(statusLines) {
		return statusLines[code]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " status code " + strconv.Itoa(code) + "\r\n"
}

// The Date field, formatted once a second.
type dateLine struct {
	sec int64
	b   []byte
}

var cachedDate atomic.Pointer[dateLine]

func date() []byte {
	now := time.Now()
	if d := cachedDate.Load(); d != nil && d.sec == now.Unix() {
		return d.b
	}
	d := &dateLine{sec: now.Unix(), b: now.UTC().AppendFormat(make([]byte, 0, 29), http.TimeFormat)}
	cachedDate.Store(d)
	return d.b
}
