package route

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/knit-mesh/knit/proxy/config"
)

// matcher is a compiled RouteMatch. A regex that does not compile (the
// config's validation refuses those) makes the route match nothing.
type matcher struct {
	prefix     string
	pathPrefix string // without its trailing "/": "/" becomes "" and matches every path
	path       string
	regex      *regexp.Regexp
	broken     bool
	methods    []string
	headers    []headerMatch
	query      []queryMatch
}

type headerMatch struct {
	config.HeaderMatch
	re *regexp.Regexp
}

type queryMatch struct {
	name, exact string
	re          *regexp.Regexp
}

func compileMatch(m config.RouteMatch) matcher {
	c := matcher{prefix: m.Prefix, path: m.Path, methods: m.Methods}
	if m.PathPrefix != "" {
		c.pathPrefix = strings.TrimRight(m.PathPrefix, "/")
	}
	if m.Regex != "" {
		c.regex = c.compile(m.Regex)
	}
	for _, h := range m.Headers {
		hm := headerMatch{HeaderMatch: h}
		if h.Regex != "" {
			hm.re = c.compile(h.Regex)
		}
		c.headers = append(c.headers, hm)
	}
	for _, q := range m.QueryParams {
		qm := queryMatch{name: q.Name, exact: q.Exact}
		if q.Regex != "" {
			qm.re = c.compile(q.Regex)
		}
		c.query = append(c.query, qm)
	}
	return c
}

// compile anchors expr: RE2 matches, as Envoy's safe_regex, the whole value.
func (c *matcher) compile(expr string) *regexp.Regexp {
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		c.broken = true
	}
	return re
}

func (c *matcher) matches(r *http.Request) bool {
	if c.broken {
		return false
	}
	p := r.URL.Path
	if c.path != "" && p != c.path {
		return false
	}
	if c.prefix != "" && !strings.HasPrefix(p, c.prefix) {
		return false
	}
	if c.pathPrefix != "" && !SegmentPrefix(p, c.pathPrefix) {
		return false
	}
	if c.regex != nil && !c.regex.MatchString(p) {
		return false
	}
	if len(c.methods) > 0 {
		ok := false
		for _, m := range c.methods {
			if m == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for i := range c.headers {
		if !c.headers[i].matches(r.Header.Values(c.headers[i].Name)) {
			return false
		}
	}
	if len(c.query) > 0 {
		q := r.URL.Query()
		for i := range c.query {
			qm := &c.query[i]
			vals, ok := q[qm.name]
			if !ok {
				return false
			}
			v := vals[0] // Gateway API: the first value counts
			if (qm.re != nil && !qm.re.MatchString(v)) || (qm.re == nil && v != qm.exact) {
				return false
			}
		}
	}
	return true
}

func (h *headerMatch) matches(vals []string) bool {
	var hit bool
	switch {
	case h.Present:
		hit = len(vals) > 0
	default:
		for _, v := range vals {
			if (h.re != nil && h.re.MatchString(v)) ||
				(h.Exact != "" && v == h.Exact) ||
				(h.Prefix != "" && strings.HasPrefix(v, h.Prefix)) {
				hit = true
				break
			}
		}
	}
	return hit != h.Invert
}

// SegmentPrefix reports whether path starts with prefix (no trailing "/")
// on a segment boundary: "/a" matches "/a", "/a/" and "/a/b", not "/ab".
func SegmentPrefix(path, prefix string) bool {
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// matchedPrefix is the part of the path a prefix match consumed, for
// prefix rewrites.
func (c *matcher) matchedPrefix() string {
	if c.prefix != "" {
		return c.prefix
	}
	return c.pathPrefix
}
