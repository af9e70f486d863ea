package h2relay

import (
	"strings"

	"golang.org/x/net/http2/hpack"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/route"
)

// answersLocally: the route answers itself (a redirect or a direct response), which the relay
// does not do.
func answersLocally(rt *route.Route) bool {
	return rt.Actions != nil && (rt.Actions.Redirect != nil || rt.Actions.DirectResponse != nil)
}

// routeRequestHeaders and routeResponseHeaders are a route's own header changes, applied
// before its target's as on the HTTP path.
func routeRequestHeaders(rt *route.Route) *config.HeaderModifier {
	if rt.Actions == nil {
		return nil
	}
	return rt.Actions.RequestHeaders
}

func routeResponseHeaders(rt *route.Route) *config.HeaderModifier {
	if rt.Actions == nil {
		return nil
	}
	return rt.Actions.ResponseHeaders
}

// modifyFields applies a target's header modifier to an HTTP/2 header block as
// route.ModifyHeaders does to an http.Header: adds, then sets, then removes. Names are
// lowercased (HTTP/2 field names are), and the fields HTTP/2 framing owns are left alone, as
// net/http's HTTP/2 transport and server ignore them in a header map.
func modifyFields(fields []hpack.HeaderField, m *config.HeaderModifier) []hpack.HeaderField {
	if m == nil {
		return fields
	}
	for _, hv := range m.Add {
		if name, ok := modifiableName(hv.Name); ok {
			fields = append(fields, hpack.HeaderField{Name: name, Value: hv.Value})
		}
	}
	for _, hv := range m.Set {
		if name, ok := modifiableName(hv.Name); ok {
			fields = append(withoutField(fields, name), hpack.HeaderField{Name: name, Value: hv.Value})
		}
	}
	for _, n := range m.Remove {
		if name, ok := modifiableName(n); ok {
			fields = withoutField(fields, name)
		}
	}
	return fields
}

// modifiableName is a modifier's header name as an HTTP/2 field name, unless the field is one
// a modifier may not change: pseudo-headers, host (:authority is the request's), the body's
// framing and connection-specific fields, which HTTP/2 forbids.
func modifiableName(n string) (string, bool) {
	name := strings.ToLower(n)
	switch name {
	case "host", "content-length", "te", "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return "", false
	}
	return name, !strings.HasPrefix(name, ":")
}

// withoutField removes every field called name, in place.
func withoutField(fields []hpack.HeaderField, name string) []hpack.HeaderField {
	out := fields[:0]
	for _, f := range fields {
		if f.Name != name {
			out = append(out, f)
		}
	}
	return out
}
