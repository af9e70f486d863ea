package http1

import (
	"net/http"
	"net/url"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// head is a request head the engine takes: a strict subset of what net/http
// accepts, parsed to exactly what net/http would make of it. Anything else
// (see parseHead) is left to net/http.
type head struct {
	method, target string
	url            *url.URL
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
// waited for.
func endOfHead(b []byte) int {
	lineStart := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 == len(b) {
				return 0
			}
			if b[i+1] != '\n' {
				return -1
			}
			if i == lineStart { // the blank line
				if i == 0 {
					return -1 // an empty line before the request line
				}
				return i + 2
			}
			i++
			lineStart = i + 1
		case '\n':
			return -1
		}
	}
	return 0
}

// parseHead parses the head raw (its bytes through the blank line) as
// net/http would, or refuses it (ok false) when it is anything the engine
// leaves to net/http: another method or version, a target that is not
// origin-form, obs-fold, a malformed or duplicate field where net/http has
// rules of its own (Host, Content-Length), or a field that asks for a
// protocol feature (Transfer-Encoding, Expect, Upgrade, Pragma, Trailer,
// HTTP2-Settings). Values are substrings of one string per head.
func parseHead(raw []byte, h *head) bool {
	s := string(raw[:len(raw)-2]) // one allocation: every string below is part of it
	eol := indexCRLF(s)
	line := s[:eol]
	sp1 := indexByte(line, ' ')
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
	sp2 := indexByte(rest, ' ')
	if sp2 <= 0 || rest[sp2+1:] != "HTTP/1.1" || rest[0] != '/' {
		return false
	}
	h.target = rest[:sp2]
	for i := 0; i < len(h.target); i++ {
		if c := h.target[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	u, err := url.ParseRequestURI(h.target)
	if err != nil || u.Host != "" {
		return false
	}
	h.url = u

	fields := s[eol+2:]
	n := countLines(fields)
	hdr := make(http.Header, n)
	vals := make([]string, n)
	var key [64]byte
	hosts, lengths := 0, 0
	h.contentLength, h.close, h.host = 0, false, ""
	for i := 0; fields != ""; i++ {
		eol := indexCRLF(fields)
		line := fields[:eol]
		fields = fields[eol+2:]
		colon := indexByte(line, ':')
		if colon <= 0 || colon > len(key) {
			return false
		}
		name := line[:colon]
		for j := 0; j < len(name); j++ {
			if !httpguts.IsTokenRune(rune(name[j])) {
				return false
			}
		}
		k := canonicalKey(key[:colon], name)
		v := trimOWS(line[colon+1:])
		if !httpguts.ValidHeaderFieldValue(v) {
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
		vals[i] = v
		if prev, ok := hdr[k]; ok {
			hdr[k] = append(prev, v)
		} else {
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
	if hosts != 1 {
		return false // HTTP/1.1 needs exactly one; net/http answers the others
	}
	h.header = hdr
	return true
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey for a token, interned for
// common names so most keys cost no allocation.
func canonicalKey(buf []byte, name string) string {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
		upper = c == '-'
	}
	if k, ok := commonKeys[string(buf)]; ok {
		return k
	}
	return string(buf)
}

var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Authorization", "Cache-Control", "Connection", "Content-Disposition", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Type",
		"Cookie", "Date", "Etag", "Expires", "From", "Host", "If-Match", "If-Modified-Since",
		"If-None-Match", "If-Range", "If-Unmodified-Since", "Keep-Alive", "Last-Modified", "Origin",
		"Range", "Referer", "Te", "Traceparent", "Tracestate", "User-Agent", "Via",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id",
		"Grpc-Timeout", "X-Knit-Peer-Identity", "Proxy-Connection", "Proxy-Authorization",
		"B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Sampled", "Baggage",
	} {
		m[k] = k
	}
	return m
}()

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

// countLines counts the CRLF-ended lines of a field section.
func countLines(s string) int {
	n := 0
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\r' && s[i+1] == '\n' {
			n++
		}
	}
	return n
}

func indexCRLF(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '\r' && s[i+1] == '\n' {
			return i
		}
	}
	return len(s)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
