package http1

import (
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Field lines, shared by the request and the response parsers. Both run on a
// head endOfHead accepted: every CR in it is followed by LF and no LF stands
// alone, so a line ends at its first CR.

// byteClass says per byte what a field line may hold.
var tokenByte, badValueByte [256]bool

func init() {
	for c := 0; c < 256; c++ {
		tokenByte[c] = httpguts.IsTokenRune(rune(c))
		// httpguts.ValidHeaderFieldValue refuses control bytes but tab (and space).
		badValueByte[c] = (c < ' ' && c != '\t') || c == 0x7f
	}
}

// maxFieldName is the longest field name the parsers take.
const maxFieldName = 64

// parseField splits a field line "name: value" as textproto reads it: the
// name canonical (interned when common), the value without surrounding
// spaces and tabs. ok false: an empty or longer name, a byte that is not a
// token's in the name, or a control byte in the value.
func parseField(key *[maxFieldName]byte, line string) (k, v string, ok bool) {
	colon := strings.IndexByte(line, ':')
	if colon <= 0 || colon > maxFieldName {
		return "", "", false
	}
	upper := true
	for j := 0; j < colon; j++ {
		c := line[j]
		if !tokenByte[c] {
			return "", "", false
		}
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		key[j] = c
		upper = c == '-'
	}
	v = trimOWS(line[colon+1:])
	for j := 0; j < len(v); j++ {
		if badValueByte[v[j]] {
			return "", "", false
		}
	}
	return internKey(key[:colon]), v, true
}

// nextLine returns the first line of a field section and the rest.
func nextLine(fields string) (line, rest string) {
	eol := strings.IndexByte(fields, '\r')
	if eol < 0 {
		return fields, ""
	}
	return fields[:eol], fields[eol+2:]
}

// addField stores one value per name, with no lookup first: a name that
// comes twice replaces its value, which mergeFields then repairs (the header
// then has fewer names than stored fields).
func addField(hdr http.Header, vals []string, i int, k, v string) {
	vals[i] = v
	hdr[k] = vals[i : i+1 : i+1]
}

// mergeFields rebuilds hdr from the field section when a name came more
// than once: its values in order, as textproto keeps them. skip is a name
// the parser keeps out of the header (Host for a request).
func mergeFields(fields string, hdr http.Header, vals []string, skip string) {
	clear(hdr)
	var key [maxFieldName]byte
	for i := 0; fields != ""; i++ {
		var line string
		line, fields = nextLine(fields)
		k, v, _ := parseField(&key, line)
		if k == skip {
			continue
		}
		vals[i] = v
		if prev, ok := hdr[k]; ok {
			hdr[k] = append(prev, v)
		} else {
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
}
