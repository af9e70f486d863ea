package http1

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// head is a request head the engine takes: a strict subset of what net/http
// accepts, parsed to exactly what net/http would make of it. Anything else
// (see parseHead) is left to net/http.
type head struct {
	method, target string
	url            url.URL // copied into the request's own allocation (see serve)
	host           string
	header         http.Header
	contentLength  int64
	close          bool // the client sent Connection: close
}

// verdict says what to do with the bytes at the start of the buffer.
type verdict uint8

const (
	needMore verdict = iota // no complete head yet
	take                    // a head the engine serves
	handOff                 // net/http serves the rest of the connection
)

// methods the engine serves; anything else (CONNECT, PRI: the h2c preface,
// extension methods) goes to net/http. Interned: no allocation per request.
var methods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodDelete, http.MethodOptions, http.MethodPatch,
}

// endOfHead returns the length of the head at the start of b (through its
// blank line), 0 if b holds no complete head, or -1 if b cannot start a head
// the engine serves: a bare LF or CR anywhere before the blank line (net/http
// reads those leniently), which also ensures a head ending in "\n\n" is never
// waited for. It looks for line ends with IndexByte (vectorized), not byte by byte.
func endOfHead(b []byte) int {
	lineStart := 0
	for {
		lf := bytes.IndexByte(b[lineStart:], '\n')
		if lf < 0 {
			// No line end yet: a CR is fine only as the last byte (its LF may follow).
			if cr := bytes.IndexByte(b[lineStart:], '\r'); cr >= 0 && lineStart+cr != len(b)-1 {
				return -1
			}
			return 0
		}
		end := lineStart + lf // the LF
		if end == lineStart || b[end-1] != '\r' || bytes.IndexByte(b[lineStart:end-1], '\r') >= 0 {
			return -1 // a bare LF, or a bare CR inside the line
		}
		if end-1 == lineStart { // the blank line
			if lineStart == 0 {
				return -1 // an empty line before the request line
			}
			return end + 1
		}
		lineStart = end + 1
	}
}

// parseHead parses the head raw (its bytes through the blank line) as
// net/http would, or refuses it (ok false) when it is anything the engine
// leaves to net/http: another method or version, a target that is not
// origin-form, obs-fold, a malformed or duplicate field where net/http has
// rules of its own (Host, Content-Length), or a field that asks for a
// protocol feature (Transfer-Encoding, Expect, Upgrade, Pragma, Trailer,
// HTTP2-Settings). Values are substrings of one string per head.
func parseHead(raw []byte, h *head) bool {
	s := string(raw[:len(raw)-2])     // one allocation: every string below is part of it
	eol := strings.IndexByte(s, '\r') // the first line's end: endOfHead let no other CR through
	line := s[:eol]
	sp1 := strings.IndexByte(line, ' ')
	if sp1 <= 0 {
		return false
	}
	h.method = ""
	for _, m := range methods {
		if line[:sp1] == m {
			h.method = m
			break
		}
	}
	if h.method == "" {
		return false
	}
	rest := line[sp1+1:]
	sp2 := strings.IndexByte(rest, ' ')
	if sp2 <= 0 || rest[sp2+1:] != "HTTP/1.1" || rest[0] != '/' {
		return false
	}
	h.target = rest[:sp2]
	for i := 0; i < len(h.target); i++ {
		if c := h.target[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	if plainPath(h.target) {
		h.url = url.URL{Path: h.target} // what url.ParseRequestURI makes of it, without the parse
	} else {
		u, err := url.ParseRequestURI(h.target)
		if err != nil || u.Host != "" {
			return false
		}
		h.url = *u
	}

	fields := s[eol+2:]
	n := strings.Count(fields, "\n")
	hdr := make(http.Header, n)
	vals := make([]string, n)
	var key [maxFieldName]byte
	hosts, lengths, stored := 0, 0, 0
	h.contentLength, h.close, h.host = 0, false, ""
	for i, rest := 0, fields; rest != ""; i++ {
		var line string
		line, rest = nextLine(rest)
		k, v, ok := parseField(&key, line)
		if !ok {
			return false
		}
		switch k {
		case "Transfer-Encoding", "Expect", "Upgrade", "Pragma", "Trailer", "Http2-Settings":
			return false
		case "Host":
			if hosts++; hosts > 1 || !httpguts.ValidHostHeader(v) {
				return false
			}
			h.host = v
			continue // net/http keeps Host in Request.Host only
		case "Content-Length":
			if lengths++; lengths > 1 {
				return false
			}
			cl, ok := parseLength(v)
			if !ok {
				return false
			}
			h.contentLength = cl
		case "Connection":
			if httpguts.HeaderValuesContainsToken([]string{v}, "upgrade") {
				return false
			}
			if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
				h.close = true
			}
		}
		addField(hdr, vals, i, k, v)
		stored++
	}
	if len(hdr) < stored {
		mergeFields(fields, hdr, vals, "Host")
	}
	if hosts != 1 {
		return false // HTTP/1.1 needs exactly one; net/http answers the others
	}
	h.header = hdr
	return true
}

// plainPath: a target of only unreserved bytes and '/' (no query, no
// escapes), which url.ParseRequestURI turns into a URL with just that Path.
func plainPath(t string) bool {
	for i := 0; i < len(t); i++ {
		if !pathByte[t[i]] {
			return false
		}
	}
	return true
}

var pathByte = func() (b [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		b[c], b[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		b[c] = true
	}
	for _, c := range "/-._~" {
		b[c] = true
	}
	return b
}()

// internKey returns a canonical field name as a string: a constant for
// common names (no allocation; a switch, cheaper than hashing into a map),
// else a new string.
func internKey(b []byte) string {
	switch string(b) {
	case "Accept":
		return "Accept"
	case "Accept-Charset":
		return "Accept-Charset"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Accept-Language":
		return "Accept-Language"
	case "Accept-Ranges":
		return "Accept-Ranges"
	case "Authorization":
		return "Authorization"
	case "Cache-Control":
		return "Cache-Control"
	case "Connection":
		return "Connection"
	case "Content-Disposition":
		return "Content-Disposition"
	case "Content-Encoding":
		return "Content-Encoding"
	case "Content-Language":
		return "Content-Language"
	case "Content-Length":
		return "Content-Length"
	case "Content-Location":
		return "Content-Location"
	case "Content-Range":
		return "Content-Range"
	case "Content-Type":
		return "Content-Type"
	case "Cookie":
		return "Cookie"
	case "Date":
		return "Date"
	case "Etag":
		return "Etag"
	case "Expires":
		return "Expires"
	case "From":
		return "From"
	case "Host":
		return "Host"
	case "If-Match":
		return "If-Match"
	case "If-Modified-Since":
		return "If-Modified-Since"
	case "If-None-Match":
		return "If-None-Match"
	case "If-Range":
		return "If-Range"
	case "If-Unmodified-Since":
		return "If-Unmodified-Since"
	case "Keep-Alive":
		return "Keep-Alive"
	case "Last-Modified":
		return "Last-Modified"
	case "Origin":
		return "Origin"
	case "Range":
		return "Range"
	case "Referer":
		return "Referer"
	case "Te":
		return "Te"
	case "Traceparent":
		return "Traceparent"
	case "Tracestate":
		return "Tracestate"
	case "User-Agent":
		return "User-Agent"
	case "Via":
		return "Via"
	case "X-Forwarded-For":
		return "X-Forwarded-For"
	case "X-Forwarded-Host":
		return "X-Forwarded-Host"
	case "X-Forwarded-Proto":
		return "X-Forwarded-Proto"
	case "X-Request-Id":
		return "X-Request-Id"
	case "Grpc-Timeout":
		return "Grpc-Timeout"
	case "X-Knit-Peer-Identity":
		return "X-Knit-Peer-Identity"
	case "Proxy-Connection":
		return "Proxy-Connection"
	case "Proxy-Authorization":
		return "Proxy-Authorization"
	case "B3":
		return "B3"
	case "X-B3-Traceid":
		return "X-B3-Traceid"
	case "X-B3-Spanid":
		return "X-B3-Spanid"
	case "X-B3-Sampled":
		return "X-B3-Sampled"
	case "Baggage":
		return "Baggage"
	case "Server":
		return "Server"
	case "Set-Cookie":
		return "Set-Cookie"
	case "Location":
		return "Location"
	case "Vary":
		return "Vary"
	case "Age":
		return "Age"
	case "Transfer-Encoding":
		return "Transfer-Encoding"
	case "Trailer":
		return "Trailer"
	case "Upgrade":
		return "Upgrade"
	case "Expect":
		return "Expect"
	case "Pragma":
		return "Pragma"
	case "Http2-Settings":
		return "Http2-Settings"
	case "Www-Authenticate":
		return "Www-Authenticate"
	case "Strict-Transport-Security":
		return "Strict-Transport-Security"
	case "Access-Control-Allow-Origin":
		return "Access-Control-Allow-Origin"
	case "Grpc-Status":
		return "Grpc-Status"
	case "Grpc-Message":
		return "Grpc-Message"
	case "X-Content-Type-Options":
		return "X-Content-Type-Options"
	}
	return string(b)
}

// parseLength accepts what net/http's Content-Length parser accepts, minus
// the cases it treats specially (an empty value).
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// trimOWS trims what textproto trims around a value (space, tab; CR and LF
// cannot occur inside a head the engine takes).
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
