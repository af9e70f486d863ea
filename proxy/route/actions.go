package route

import (
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/knit-mesh/knit/proxy/config"
)

// Actions are what a route does besides (or instead of) forwarding.
type Actions struct {
	Redirect        *config.Redirect
	DirectResponse  *config.DirectResponse
	RequestHeaders  *config.HeaderModifier
	ResponseHeaders *config.HeaderModifier
	rewrite         *config.URLRewrite
	rewriteRegex    *regexp.Regexp
	rewriteSubst    string
	prefix          string // what the route's prefix match consumed
	segmentPrefix   bool
}

func compileActions(r config.Route) *Actions {
	if r.Redirect == nil && r.DirectResponse == nil && r.Rewrite == nil && r.RequestHeaders == nil && r.ResponseHeaders == nil {
		return nil
	}
	m := compileMatch(r.Match)
	a := &Actions{Redirect: r.Redirect, DirectResponse: r.DirectResponse, RequestHeaders: r.RequestHeaders,
		ResponseHeaders: r.ResponseHeaders, rewrite: r.Rewrite, prefix: m.matchedPrefix(), segmentPrefix: r.Match.PathPrefix != ""}
	if rw := r.Rewrite; rw != nil && rw.Regex != nil {
		a.rewriteRegex, _ = regexp.Compile(rw.Regex.Pattern)
		a.rewriteSubst = envoySubstitution(rw.Regex.Substitution)
	}
	return a
}

// envoySubstitution turns Envoy's "\1" group references into Go's "${1}".
func envoySubstitution(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9' {
			b.WriteString("${")
			b.WriteByte(s[i+1])
			b.WriteString("}")
			i++
			continue
		}
		if s[i] == '$' {
			b.WriteString("$$")
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// replacePrefix swaps the matched prefix of path for repl, keeping exactly
// one "/" between them (Gateway API ReplacePrefixMatch: prefix "/foo" with
// "/" turns "/foo/bar" into "/bar"; with "/xyz", "/foo" into "/xyz").
func (a *Actions) replacePrefix(path, repl string) string {
	prefix := a.prefix
	if !strings.HasPrefix(path, prefix) {
		return path
	}
	rest := path[len(prefix):]
	if a.segmentPrefix && strings.HasSuffix(repl, "/") && strings.HasPrefix(rest, "/") {
		rest = rest[1:]
	}
	if out := repl + rest; out != "" {
		return out
	}
	return "/"
}

// RewriteRequest applies the route's URL rewrite and request header
// modifier to the request about to be forwarded.
func (a *Actions) RewriteRequest(r *http.Request) {
	if rw := a.rewrite; rw != nil {
		path := r.URL.Path
		switch {
		case rw.PrefixRewrite != "":
			path = a.replacePrefix(path, rw.PrefixRewrite)
		case rw.FullPath != "":
			path = rw.FullPath
		case a.rewriteRegex != nil:
			path = a.rewriteRegex.ReplaceAllString(path, a.rewriteSubst)
		}
		if path != r.URL.Path {
			r.URL.Path, r.URL.RawPath = path, ""
		}
		if rw.Host != "" {
			r.Host = rw.Host
		}
	}
	ModifyHeaders(r.Header, a.RequestHeaders)
}

// ModifyHeaders adds, sets, then removes headers.
func ModifyHeaders(h http.Header, m *config.HeaderModifier) {
	if m == nil {
		return
	}
	for _, hv := range m.Add {
		h.Add(hv.Name, hv.Value)
	}
	for _, hv := range m.Set {
		h.Set(hv.Name, hv.Value)
	}
	for _, n := range m.Remove {
		h.Del(n)
	}
}

// RedirectLocation is the Location of the route's redirect for r.
func (a *Actions) RedirectLocation(r *http.Request) string {
	rd := a.Redirect
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, ""
	}
	if rd.Host != "" {
		host = rd.Host
	}
	switch {
	case rd.Port != 0:
		port = strconv.Itoa(rd.Port)
	case rd.Scheme != "":
		port = "" // the new scheme's well-known port
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 literal
	}
	path := r.URL.Path
	switch {
	case rd.Path != "":
		path = rd.Path
	case rd.PrefixRewrite != "":
		path = a.replacePrefix(path, rd.PrefixRewrite)
	}
	u := url.URL{Scheme: scheme, Host: host, Path: path, RawQuery: r.URL.RawQuery}
	return u.String()
}
