package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// FieldError names the bad field by its path, e.g. clusters[1].endpoints[0].address.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

type validator struct{ errs []error }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Validate reports every problem at once, each naming its field.
func (b *Bootstrap) Validate() error {
	v := &validator{}
	if b.Admin.Address != "" {
		v.hostPort("admin.address", b.Admin.Address)
	}
	if b.Admin.ProbeAddress != "" {
		v.hostPort("admin.probeAddress", b.Admin.ProbeAddress)
	}
	switch b.AccessLog.Format {
	case "", AccessLogJSON, AccessLogText:
	default:
		v.add("accessLog.format", "must be json or text, got %q", b.AccessLog.Format)
	}
	if b.Drain.Timeout < 0 {
		v.add("drain.timeout", "must not be negative")
	}
	if b.Drain.Delay < 0 {
		v.add("drain.delay", "must not be negative")
	}
	if r := b.Tracing.SamplingRatio; r != nil && (*r < 0 || *r > 1) {
		v.add("tracing.samplingRatio", "must be between 0 and 1, got %v", *r)
	}
	if b.Tracing.OTLPEndpoint != "" {
		v.hostPort("tracing.otlpEndpoint", b.Tracing.OTLPEndpoint)
	}

	clusters := map[string]*Cluster{}
	for i := range b.Clusters {
		c := &b.Clusters[i]
		f := fmt.Sprintf("clusters[%d]", i)
		if c.Name == "" {
			v.add(f+".name", "is required")
		} else if clusters[c.Name] != nil {
			v.add(f+".name", "duplicate cluster %q", c.Name)
		}
		clusters[c.Name] = c
		v.cluster(f, c)
	}
	seenAssign := map[string]bool{}
	for i, a := range b.Assignments {
		f := fmt.Sprintf("assignments[%d]", i)
		if clusters[a.Cluster] == nil {
			v.add(f+".cluster", "unknown cluster %q", a.Cluster)
		}
		if seenAssign[a.Cluster] {
			v.add(f+".cluster", "duplicate assignment for cluster %q", a.Cluster)
		}
		seenAssign[a.Cluster] = true
		v.endpoints(f+".endpoints", a.Endpoints)
	}

	routeConfigs := map[string]bool{}
	for i, rc := range b.RouteConfigs {
		f := fmt.Sprintf("routeConfigs[%d]", i)
		if rc.Name == "" {
			v.add(f+".name", "is required")
		} else if routeConfigs[rc.Name] {
			v.add(f+".name", "duplicate route config %q", rc.Name)
		}
		routeConfigs[rc.Name] = true
		if len(rc.VirtualHosts) == 0 {
			v.add(f+".virtualHosts", "needs at least one virtual host")
		}
		for j, vh := range rc.VirtualHosts {
			v.virtualHost(fmt.Sprintf("%s.virtualHosts[%d]", f, j), vh, clusters)
		}
	}

	if len(b.Listeners) == 0 && !b.Gateway {
		v.add("listeners", "needs at least one listener")
	}
	v.virtualListeners(b, routeConfigs, clusters)
	names := map[string]bool{}
	addrs := map[string]bool{}
	for i, l := range b.Listeners {
		f := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			v.add(f+".name", "is required")
		} else if names[l.Name] {
			v.add(f+".name", "duplicate listener %q", l.Name)
		}
		names[l.Name] = true
		if v.hostPort(f+".address", l.Address) && !strings.HasSuffix(l.Address, ":0") {
			if addrs[l.Address] {
				v.add(f+".address", "address %q used by two listeners", l.Address)
			}
			addrs[l.Address] = true
		}
		switch l.Direction {
		case Inbound, Outbound:
		default:
			v.add(f+".direction", "must be inbound or outbound, got %q", l.Direction)
		}
		switch l.Protocol {
		case ListenerAuto, ListenerHTTP, ListenerTCP:
		default:
			v.add(f+".protocol", "must be auto, http or tcp, got %q", l.Protocol)
		}
		if l.DetectTimeout < 0 {
			v.add(f+".detectTimeout", "must not be negative")
		}
		if l.OriginalDestination {
			if l.RouteConfig != "" || l.TCPCluster != "" {
				v.add(f+".originalDestination", "excludes routeConfig and tcpCluster")
			}
		} else if l.Protocol != ListenerTCP && l.RouteConfig == "" && l.Protocol == ListenerHTTP {
			v.add(f+".routeConfig", "is required for an http listener")
		}
		if l.RouteConfig != "" && !routeConfigs[l.RouteConfig] {
			v.add(f+".routeConfig", "unknown route config %q", l.RouteConfig)
		}
		if l.Protocol == ListenerTCP && l.TCPCluster == "" && !l.OriginalDestination {
			v.add(f+".tcpCluster", "is required for a tcp listener")
		}
		if l.Protocol == ListenerAuto && l.RouteConfig == "" && l.TCPCluster == "" && !l.OriginalDestination {
			v.add(f+".routeConfig", "an auto listener needs a routeConfig or a tcpCluster")
		}
		if l.TCPCluster != "" {
			if c := clusters[l.TCPCluster]; c == nil {
				v.add(f+".tcpCluster", "unknown cluster %q", l.TCPCluster)
			} else if c.Protocol != ClusterTCP {
				v.add(f+".tcpCluster", "cluster %q has protocol %q, want tcp", l.TCPCluster, c.Protocol)
			}
		}
		if l.TLS != nil && len(l.TLS.SNI) > 0 {
			validateSNI(v, f+".tls.sni", l.TLS.SNI)
		} else if l.TLS != nil {
			if l.TLS.CertFile == "" {
				v.add(f+".tls.certFile", "is required")
			}
			if l.TLS.KeyFile == "" {
				v.add(f+".tls.keyFile", "is required")
			}
		}
		if l.TLS != nil {
			for k, p := range l.TLS.ALPN {
				if p != "h2" && p != "http/1.1" {
					v.add(fmt.Sprintf("%s.tls.alpn[%d]", f, k), "must be h2 or http/1.1, got %q", p)
				}
			}
		}
		if l.Limits.MaxHeaderBytes < 0 || l.Limits.MaxHeaderBytes > 1<<20 {
			v.add(f+".limits.maxHeaderBytes", "must be between 1 and 1048576")
		}
		if l.Limits.ReadHeaderTimeout < 0 {
			v.add(f+".limits.readHeaderTimeout", "must not be negative")
		}
		if l.Limits.MaxConnections < 0 {
			v.add(f+".limits.maxConnections", "must not be negative")
		}
		if l.Limits.IdleTimeout < 0 {
			v.add(f+".limits.idleTimeout", "must not be negative")
		}
		if l.Limits.RequestBodyIdleTimeout < 0 {
			v.add(f+".limits.requestBodyIdleTimeout", "must not be negative")
		}
		if l.Limits.ResponseWriteTimeout < 0 {
			v.add(f+".limits.responseWriteTimeout", "must not be negative")
		}
	}
	return errors.Join(v.errs...)
}

func (v *validator) hostPort(field, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(field, "%q is not host:port: %v", addr, err)
		return false
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /?#") {
		v.add(field, "%q has an invalid host", addr)
		return false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		v.add(field, "%q has an invalid port", addr)
		return false
	}
	return true
}

func (v *validator) cluster(f string, c *Cluster) {
	switch c.Protocol {
	case ClusterHTTP1, ClusterHTTP2, ClusterTCP:
	default:
		v.add(f+".protocol", "must be http1, http2 or tcp, got %q", c.Protocol)
	}
	switch c.LBPolicy {
	case LBP2CEWMA, LBRoundRobin, LBWeighted:
	default:
		v.add(f+".lbPolicy", "must be p2c_ewma, round_robin or weighted, got %q", c.LBPolicy)
	}
	if c.ConnectTimeout < 0 {
		v.add(f+".connectTimeout", "must not be negative")
	}
	if c.MaxIdleConnsPerEndpoint < 0 {
		v.add(f+".maxIdleConnsPerEndpoint", "must not be negative")
	}
	if c.MaxConnectionsPerEndpoint < 0 {
		v.add(f+".maxConnectionsPerEndpoint", "must not be negative")
	}
	if c.IdleTimeout < 0 {
		v.add(f+".idleTimeout", "must not be negative")
	}
	if c.MaxResponseHeaderBytes < 0 || c.MaxResponseHeaderBytes > 1<<20 {
		v.add(f+".maxResponseHeaderBytes", "must be between 1 and 1048576")
	}
	if c.RetryBudget.Ratio < 0 || c.RetryBudget.Ratio > 1 {
		v.add(f+".retryBudget.ratio", "must be between 0 and 1, got %v", c.RetryBudget.Ratio)
	}
	if c.RetryBudget.MinPerSecond < 0 {
		v.add(f+".retryBudget.minPerSecond", "must not be negative")
	}
	if t := c.TLS; t != nil {
		if (t.CertFile == "") != (t.KeyFile == "") {
			v.add(f+".tls", "certFile and keyFile must be set together")
		}
	}
	if od := c.OutlierDetection; od != nil {
		if od.Consecutive5xx < 0 {
			v.add(f+".outlierDetection.consecutive5xx", "must not be negative")
		}
		if od.ConsecutiveConnectFailures < 0 {
			v.add(f+".outlierDetection.consecutiveConnectFailures", "must not be negative")
		}
		if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
			v.add(f+".outlierDetection.maxEjectionPercent", "must be between 0 and 100, got %d", od.MaxEjectionPercent)
		}
		if od.BaseEjectionTime < 0 || od.MaxEjectionTime < od.BaseEjectionTime {
			v.add(f+".outlierDetection.maxEjectionTime", "must be at least baseEjectionTime")
		}
	}
	v.endpoints(f+".endpoints", c.Endpoints)
}

func (v *validator) endpoints(f string, eps []Endpoint) {
	for i, e := range eps {
		v.hostPort(fmt.Sprintf("%s[%d].address", f, i), e.Address)
		switch e.Health {
		case "", EndpointHealthy, EndpointUnhealthy, EndpointDraining:
		default:
			v.add(fmt.Sprintf("%s[%d].health", f, i), "must be healthy, unhealthy or draining, got %q", e.Health)
		}
		if e.Meshed && !strings.HasPrefix(e.Identity, "spiffe://") {
			// Mutual TLS checks the peer against it: without one any mesh workload would pass.
			v.add(fmt.Sprintf("%s[%d].identity", f, i), "a meshed endpoint needs the SPIFFE ID expected of it, got %q", e.Identity)
		}
	}
}

func (v *validator) virtualHost(f string, vh VirtualHost, clusters map[string]*Cluster) {
	if vh.Name == "" {
		v.add(f+".name", "is required")
	}
	for i, d := range vh.Domains {
		if d == "" || strings.Count(d, "*") > 1 || (strings.Contains(d, "*") && d != "*" && !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*")) {
			v.add(fmt.Sprintf("%s.domains[%d]", f, i), "%q must be a host, \"*\", or have one leading or trailing \"*\"", d)
		}
	}
	if len(vh.Routes) == 0 {
		v.add(f+".routes", "needs at least one route")
	}
	for i, r := range vh.Routes {
		rf := fmt.Sprintf("%s.routes[%d]", f, i)
		if r.Name == "" {
			v.add(rf+".name", "is required")
		}
		v.routeMatch(rf+".match", r.Match)
		v.routeAction(rf, r, clusters)
		if r.Timeout != nil && *r.Timeout < 0 {
			v.add(rf+".timeout", "must not be negative")
		}
		for j, u := range r.Upgrades {
			switch {
			case u == "" || strings.ContainsAny(u, " \t,/"):
				v.add(fmt.Sprintf("%s.upgrades[%d]", rf, j), "%q is not an upgrade protocol name", u)
			case strings.EqualFold(u, "h2c"):
				v.add(fmt.Sprintf("%s.upgrades[%d]", rf, j), "h2c upgrades are never tunnelled (they would carry HTTP/2 streams past routing)")
			}
		}
		if rp := r.Retry; rp != nil {
			if rp.Attempts < 0 || rp.Attempts > 10 {
				v.add(rf+".retry.attempts", "must be between 0 and 10, got %d", rp.Attempts)
			}
			for j, on := range rp.On {
				switch on {
				case "5xx", "gateway-error", "connect-failure", "reset", "retriable-status-codes":
				default:
					v.add(fmt.Sprintf("%s.retry.retryOn[%d]", rf, j), "must be 5xx, gateway-error, connect-failure, reset or retriable-status-codes, got %q", on)
				}
			}
			for j, code := range rp.StatusCodes {
				if code < 100 || code > 599 {
					v.add(fmt.Sprintf("%s.retry.statusCodes[%d]", rf, j), "must be an HTTP status, got %d", code)
				}
			}
			for j, meth := range rp.Methods {
				if !validMethod(meth) {
					v.add(fmt.Sprintf("%s.retry.methods[%d]", rf, j), "%q is not an HTTP method", meth)
				}
			}
			if rp.PerTryTimeout < 0 {
				v.add(rf+".retry.perTryTimeout", "must not be negative")
			}
			if rp.Backoff.Base < 0 || rp.Backoff.Max < rp.Backoff.Base {
				v.add(rf+".retry.backoff", "need 0 <= base <= max")
			}
		}
	}
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func (v *validator) routeMatch(f string, m RouteMatch) {
	set := 0
	for _, p := range []struct{ field, val string }{{"prefix", m.Prefix}, {"pathPrefix", m.PathPrefix}, {"path", m.Path}} {
		if p.val == "" {
			continue
		}
		set++
		if !strings.HasPrefix(p.val, "/") {
			v.add(f+"."+p.field, "%q must start with /", p.val)
		}
	}
	if m.Regex != "" {
		set++
		v.regex(f+".regex", m.Regex)
	}
	if set > 1 {
		v.add(f, "set at most one of prefix, pathPrefix, path and regex")
	}
	for j, meth := range m.Methods {
		if !validMethod(meth) {
			v.add(fmt.Sprintf("%s.methods[%d]", f, j), "%q is not an HTTP method", meth)
		}
	}
	for j, h := range m.Headers {
		hf := fmt.Sprintf("%s.headers[%d]", f, j)
		if !validHeaderName(h.Name) {
			v.add(hf+".name", "%q is not a header name", h.Name)
		}
		set := 0
		for _, s := range []string{h.Exact, h.Prefix, h.Regex} {
			if s != "" {
				set++
			}
		}
		if h.Present {
			set++
		}
		if set != 1 {
			v.add(hf, "set exactly one of exact, prefix, regex or present")
		}
		if h.Regex != "" {
			v.regex(hf+".regex", h.Regex)
		}
	}
	for j, q := range m.QueryParams {
		qf := fmt.Sprintf("%s.queryParams[%d]", f, j)
		if q.Name == "" {
			v.add(qf+".name", "is required")
		}
		if q.Exact != "" && q.Regex != "" {
			v.add(qf, "set exact or regex, not both")
		}
		if q.Regex != "" {
			v.regex(qf+".regex", q.Regex)
		}
	}
}

func (v *validator) routeAction(rf string, r Route, clusters map[string]*Cluster) {
	actions := 0
	if len(r.Clusters) > 0 {
		actions++
	}
	if r.Redirect != nil {
		actions++
	}
	if r.DirectResponse != nil {
		actions++
	}
	if actions != 1 {
		v.add(rf, "set exactly one of clusters, redirect and directResponse")
	}
	prefixMatch := r.Match.Prefix != "" || r.Match.PathPrefix != ""
	for j, wc := range r.Clusters {
		cf := fmt.Sprintf("%s.clusters[%d]", rf, j)
		v.headerModifier(cf+".requestHeaders", wc.RequestHeaders)
		v.headerModifier(cf+".responseHeaders", wc.ResponseHeaders)
		if wc.Name == "" {
			continue // an unresolved backend: its share is answered with 500
		}
		c := clusters[wc.Name]
		if c == nil {
			v.add(cf+".name", "unknown cluster %q", wc.Name)
		} else if c.Protocol == ClusterTCP {
			v.add(cf+".name", "cluster %q is tcp; an HTTP route needs an http1 or http2 cluster", wc.Name)
		}
	}
	if rd := r.Redirect; rd != nil {
		f := rf + ".redirect"
		switch rd.Scheme {
		case "", "http", "https":
		default:
			v.add(f+".scheme", "must be http or https, got %q", rd.Scheme)
		}
		if rd.Host != "" && !validHost(rd.Host) {
			v.add(f+".host", "%q is not a host name", rd.Host)
		}
		if rd.Port < 0 || rd.Port > 65535 {
			v.add(f+".port", "must be between 1 and 65535, got %d", rd.Port)
		}
		switch rd.Code {
		case 301, 302, 303, 307, 308:
		default:
			v.add(f+".code", "must be 301, 302, 303, 307 or 308, got %d", rd.Code)
		}
		if rd.Path != "" && rd.PrefixRewrite != "" {
			v.add(f, "set path or prefixRewrite, not both")
		}
		v.pathValue(f+".path", rd.Path)
		v.pathValue(f+".prefixRewrite", rd.PrefixRewrite)
		if rd.PrefixRewrite != "" && !prefixMatch {
			v.add(f+".prefixRewrite", "needs a prefix or pathPrefix match")
		}
	}
	if d := r.DirectResponse; d != nil && (d.Status < 200 || d.Status > 599) {
		v.add(rf+".directResponse.status", "must be between 200 and 599, got %d", d.Status)
	}
	if rw := r.Rewrite; rw != nil {
		f := rf + ".rewrite"
		if r.Redirect != nil || r.DirectResponse != nil {
			v.add(f, "applies only to a route that forwards to clusters")
		}
		set := 0
		if rw.PrefixRewrite != "" {
			set++
			if !prefixMatch {
				v.add(f+".prefixRewrite", "needs a prefix or pathPrefix match")
			}
		}
		if rw.FullPath != "" {
			set++
		}
		if rw.Regex != nil {
			set++
			v.regex(f+".regex.pattern", rw.Regex.Pattern)
			if rw.Regex.Pattern == "" {
				v.add(f+".regex.pattern", "is required")
			}
		}
		if set > 1 {
			v.add(f, "set at most one of prefixRewrite, fullPath and regex")
		}
		v.pathValue(f+".prefixRewrite", rw.PrefixRewrite)
		v.pathValue(f+".fullPath", rw.FullPath)
		if rw.Host != "" && !validHost(rw.Host) {
			v.add(f+".host", "%q is not a host name", rw.Host)
		}
	}
	v.headerModifier(rf+".requestHeaders", r.RequestHeaders)
	v.headerModifier(rf+".responseHeaders", r.ResponseHeaders)
}

func (v *validator) headerModifier(f string, m *HeaderModifier) {
	if m == nil {
		return
	}
	for _, list := range []struct {
		name string
		hs   []HeaderValue
	}{{"add", m.Add}, {"set", m.Set}} {
		for j, h := range list.hs {
			hf := fmt.Sprintf("%s.%s[%d]", f, list.name, j)
			if !validHeaderName(h.Name) || strings.HasPrefix(h.Name, ":") {
				v.add(hf+".name", "%q is not a header name", h.Name)
			}
			if !httpguts.ValidHeaderFieldValue(h.Value) {
				v.add(hf+".value", "%q is not a valid header value", h.Value)
			}
		}
	}
	for j, n := range m.Remove {
		if !validHeaderName(n) {
			v.add(fmt.Sprintf("%s.remove[%d]", f, j), "%q is not a header name", n)
		}
	}
}

func (v *validator) pathValue(f, p string) {
	if p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# \t\r\n")) {
		v.add(f, "%q must start with / and hold no query, fragment or whitespace", p)
	}
}

func (v *validator) regex(f, expr string) {
	if len(expr) > maxRegexBytes {
		v.add(f, "longer than %d bytes", maxRegexBytes)
		return
	}
	if _, err := regexp.Compile(expr); err != nil {
		v.add(f, "not an RE2 expression: %v", err)
	}
}

// maxRegexBytes bounds what a config may make the proxy compile per route.
const maxRegexBytes = 4 << 10

func (v *validator) virtualListeners(b *Bootstrap, routeConfigs map[string]bool, clusters map[string]*Cluster) {
	if len(b.VirtualListeners) == 0 {
		return
	}
	captured := false
	for _, l := range b.Listeners {
		captured = captured || (l.OriginalDestination && l.Direction == Outbound)
	}
	if !captured {
		v.add("virtualListeners", "need an outbound listener with originalDestination to serve them")
	}
	names := map[string]bool{}
	addrs := map[netip.AddrPort]bool{}
	for i, vl := range b.VirtualListeners {
		f := fmt.Sprintf("virtualListeners[%d]", i)
		if vl.Name == "" {
			v.add(f+".name", "is required")
		} else if names[vl.Name] {
			v.add(f+".name", "duplicate virtual listener %q", vl.Name)
		}
		names[vl.Name] = true
		ap, err := netip.ParseAddrPort(vl.Address)
		switch {
		case err != nil:
			v.add(f+".address", "%q is not IP:port: %v", vl.Address, err)
		case ap.Port() == 0 || ap.Addr().IsUnspecified():
			v.add(f+".address", "%q needs a specific IP and a port", vl.Address)
		case addrs[ap]:
			v.add(f+".address", "address %q used by two virtual listeners", vl.Address)
		default:
			addrs[ap] = true
		}
		if vl.RouteConfig == "" && vl.TCPCluster == "" {
			v.add(f, "needs routeConfig, tcpCluster or both")
		}
		if vl.RouteConfig != "" && !routeConfigs[vl.RouteConfig] {
			v.add(f+".routeConfig", "unknown route config %q", vl.RouteConfig)
		}
		if vl.TCPCluster != "" && clusters[vl.TCPCluster] == nil {
			v.add(f+".tcpCluster", "unknown cluster %q", vl.TCPCluster)
		}
	}
}

func validHeaderName(n string) bool {
	return httpguts.ValidHeaderFieldName(strings.TrimPrefix(n, ":"))
}

func validHost(h string) bool {
	return h != "" && !strings.ContainsAny(h, " /?#@\t\r\n\\")
}

// validateSNI checks the certificates chosen by server name: each entry's pairs must parse,
// and no two entries may claim the same server name (or both none).
func validateSNI(v *validator, f string, sni []SNICertificates) {
	seen := map[string]bool{}
	for i, e := range sni {
		ef := fmt.Sprintf("%s[%d]", f, i)
		if len(e.Certificates) == 0 {
			v.add(ef+".certificates", "at least one certificate is required")
		}
		for j, c := range e.Certificates {
			if _, err := tls.X509KeyPair([]byte(c.CertificatePEM), []byte(c.KeyPEM)); err != nil {
				v.add(fmt.Sprintf("%s.certificates[%d]", ef, j), "not a PEM certificate chain and its key: %v", err)
			}
		}
		names := e.ServerNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			if n != "" && !validServerName(n) {
				v.add(ef+".serverNames", "%q is not a hostname or *.wildcard", n)
			}
			if seen[n] {
				v.add(ef+".serverNames", "%q is also another entry's", n)
			}
			seen[n] = true
		}
	}
}

// validServerName accepts a DNS name, or one with a "*." first label.
func validServerName(n string) bool {
	n = strings.TrimPrefix(n, "*.")
	if n == "" || len(n) > 253 || strings.Contains(n, "*") {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
	}
	return true
}
