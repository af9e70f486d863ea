package httpproxy

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/knit-mesh/knit/proxy/route"
)

// answerLocally handles what a route answers without an upstream (redirect,
// direct response, unresolved backend), and applies its request rewrites
// otherwise; it reports whether the request is done.
func (h *Handler) answerLocally(w http.ResponseWriter, r *http.Request, start time.Time, st *State, rt *route.Route, t *route.Target) bool {
	a, stats := rt.Actions, t.Stats(st.Direction)
	var code int
	switch {
	case a != nil && a.Redirect != nil:
		code = a.Redirect.Code
		route.ModifyHeaders(w.Header(), a.ResponseHeaders)
		w.Header().Set("Location", a.RedirectLocation(r))
		w.WriteHeader(code)
	case a != nil && a.DirectResponse != nil:
		code = a.DirectResponse.Status
		route.ModifyHeaders(w.Header(), a.ResponseHeaders)
		if body := a.DirectResponse.Body; body != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		} else {
			w.WriteHeader(code)
		}
	case t.Cluster == nil:
		// A backend that could not be resolved: Gateway API says 500.
		code = http.StatusInternalServerError
		writeError(w, r, code, msgNoBackend)
	default:
		a.RewriteRequest(r)
		return false
	}
	stats.Latency.Observe(time.Since(start).Seconds())
	stats.Request(code, -1)
	h.logAccess(start, st, rt, nil, r, code, -1, 0, 0, "", nil, nil)
	return true
}

const msgNoBackend = "the route's backend is not available"

type destinationKey struct{}

// VirtualDestination is the original destination of a connection the
// listener matched to a virtual listener, and the route used if a reload
// removes that virtual listener while the connection lives.
type VirtualDestination struct {
	Dst      netip.AddrPort
	Fallback *route.Route
}

// WithDestination makes each request of a connection use the current route
// table of the virtual listener for d.Dst (looked up per request, so a
// reload reaches long-lived connections too).
func WithDestination(ctx context.Context, d *VirtualDestination) context.Context {
	return context.WithValue(ctx, destinationKey{}, d)
}

// match finds the request's route: in its virtual listener's table when the
// connection has one, else in the listener's own table.
func (st *State) match(r *http.Request) *route.Route {
	if st.Virtual == nil { // not a captured outbound listener: no context lookup
		return st.Routes.Match(r)
	}
	if d, ok := r.Context().Value(destinationKey{}).(*VirtualDestination); ok {
		if t := st.Virtual[d.Dst]; t != nil {
			return t.Match(r)
		}
		return d.Fallback
	}
	return st.Routes.Match(r)
}
