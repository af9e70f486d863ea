package http1

import (
	"bufio"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// ReadResponseHead reads a response head from br in place when it lies in a
// strict subset of what http.ReadResponse accepts, and sets *resp to the
// response http.ReadResponse would have returned, but without a Body: bodyLen
// bytes of body follow the head on br (0: none, and the caller sets
// http.NoBody). The caller allocates resp, so it can share an allocation,
// and may pass room for the field values in vals (one string per field
// line; a longer head allocates its own).
//
// ok false leaves every byte it read in br unconsumed: the caller hands br to
// http.ReadResponse, which reads it exactly as if it had been asked first
// (also a read error: the connection reports it again). Outside the subset:
// a head larger than br's buffer, a version other than HTTP/1.1, a 1xx or a
// status outside 200-599, bare LF or CR, obs-fold, a field name that is not a
// token or is longer than 64 bytes, Transfer-Encoding, Pragma (net/http adds
// Cache-Control for it), no Content-Length or more than one, or one that is
// not all digits, and a body delimited by the connection's close.
func ReadResponseHead(br *bufio.Reader, req *http.Request, resp *http.Response, vals []string) (bodyLen int64, ok bool) {
	for {
		b, _ := br.Peek(br.Buffered())
		n := endOfHead(b)
		if n < 0 {
			return 0, false
		}
		if n > 0 {
			bodyLen, ok = parseResponseHead(b[:n], req, resp, vals)
			if ok {
				br.Discard(n)
			}
			return bodyLen, ok
		}
		if len(b) >= br.Size() {
			return 0, false
		}
		if _, err := br.Peek(len(b) + 1); err != nil {
			return 0, false
		}
	}
}

// parseResponseHead parses raw (a head through its blank line) as
// http.ReadResponse would, or refuses it (see ReadResponseHead).
func parseResponseHead(raw []byte, req *http.Request, resp *http.Response, vals []string) (int64, bool) {
	s := string(raw[:len(raw)-2])     // one allocation: every string below is part of it
	eol := strings.IndexByte(s, '\r') // the first line's end: endOfHead let no other CR through
	line := s[:eol]
	const proto = "HTTP/1.1 "
	if len(line) < len(proto)+3 || line[:len(proto)] != proto {
		return 0, false
	}
	status := line[len(proto):]
	if status[0] < '2' || status[0] > '5' || !isDigit(status[1]) || !isDigit(status[2]) ||
		(len(status) > 3 && status[3] != ' ') {
		return 0, false
	}
	code := int(status[0]-'0')*100 + int(status[1]-'0')*10 + int(status[2]-'0')

	fields := s[eol+2:]
	n := strings.Count(fields, "\n")
	hdr := make(http.Header, n)
	if len(vals) < n {
		vals = make([]string, n)
	}
	var key [maxFieldName]byte
	lengths, length, closing := 0, int64(0), false
	for i, rest := 0, fields; rest != ""; i++ {
		var line string
		line, rest = nextLine(rest)
		k, v, ok := parseField(&key, line)
		if !ok {
			return 0, false
		}
		switch k {
		case "Transfer-Encoding", "Pragma":
			return 0, false
		case "Content-Length":
			if lengths++; lengths > 1 {
				return 0, false
			}
			if length, ok = parseLength(v); !ok {
				return 0, false
			}
		case "Connection":
			if !closing && httpguts.HeaderValuesContainsToken([]string{v}, "close") {
				closing = true
			}
		}
		addField(hdr, vals, i, k, v)
	}
	if len(hdr) < n {
		mergeFields(fields, hdr, vals, "")
	}
	if closing {
		delete(hdr, "Connection") // as net/http does for a response that closes
	}

	*resp = http.Response{Status: status, StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr, Close: closing, Request: req}
	switch {
	case req != nil && req.Method == http.MethodHead:
		resp.ContentLength = -1
		if lengths == 1 {
			resp.ContentLength = length // the length a GET would have had
		}
		return 0, true
	case code == http.StatusNoContent || code == http.StatusNotModified:
		return 0, true
	case lengths == 0:
		return 0, false // the body ends when the connection closes
	}
	resp.ContentLength = length
	return length, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
