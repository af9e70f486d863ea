package route

import (
	"net/http"
	"net/url"
	"strings"
)

// NormalizePath rewrites the request's path in place to its normal form and
// reports false when the path cannot be normalised (the caller answers 400).
// Routing and forwarding then see the same path, so a path-based policy
// cannot be bypassed with "%2F", "..", "." or "//": as Envoy's normalize_path
// + merge_slashes with escaped slashes unescaped and forwarded.
//
// Steps, on the escaped path: percent-encoded unreserved characters are
// decoded and other escapes upper-cased (RFC 3986 §6.2.2); "%2F", "%5C" and
// "\" become "/"; runs of "/" become one; "." and ".." segments are removed
// (RFC 3986 §5.2.4), never climbing above the root.
func NormalizePath(r *http.Request) bool {
	if r.Method == http.MethodConnect || (r.Method == http.MethodOptions && r.URL.Path == "*") {
		return true
	}
	esc := r.URL.EscapedPath()
	if isNormal(esc) {
		return true // the common case: nothing to do, nothing allocated
	}
	p, ok := normalize(esc)
	if !ok {
		return false
	}
	decoded, err := url.PathUnescape(p)
	if err != nil {
		return false
	}
	r.URL.Path, r.URL.RawPath = decoded, p
	return true
}

// isNormal reports whether p has no escape, backslash, empty or dot segment.
func isNormal(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '%', '\\':
			return false
		case '/':
			if i+1 < len(p) && (p[i+1] == '/' || p[i+1] == '.') {
				return false
			}
		}
	}
	return true
}

func normalize(escaped string) (string, bool) {
	if escaped == "" {
		return "/", true
	}
	if escaped[0] != '/' {
		return "", false // origin-form always starts with "/"
	}
	// 1. escapes and backslashes.
	var b strings.Builder
	b.Grow(len(escaped))
	for i := 0; i < len(escaped); i++ {
		switch c := escaped[i]; c {
		case '%':
			if i+2 >= len(escaped) || !isHex(escaped[i+1]) || !isHex(escaped[i+2]) {
				return "", false
			}
			v := unhex(escaped[i+1])<<4 | unhex(escaped[i+2])
			i += 2
			switch {
			case v == '/' || v == '\\':
				b.WriteByte('/')
			case isUnreserved(v):
				b.WriteByte(v)
			default:
				b.WriteByte('%')
				b.WriteByte(upperHex[v>>4])
				b.WriteByte(upperHex[v&15])
			}
		case '\\':
			b.WriteByte('/')
		default:
			b.WriteByte(c)
		}
	}
	// 2. merge slashes and remove dot segments.
	segs := strings.Split(b.String(), "/")
	out := make([]string, 0, len(segs))
	for _, seg := range segs {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	last := segs[len(segs)-1]
	trailing := last == "" || last == "." || last == ".."
	res := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		res += "/"
	}
	return res, true
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
