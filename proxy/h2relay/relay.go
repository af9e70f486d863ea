// Package h2relay forwards HTTP/2 streams from a client connection to HTTP/2 upstreams frame by
// frame, without net/http's server and transport in between: one goroutine reads the client's
// frames (golang.org/x/net/http2's Framer and hpack), one per upstream connection reads that
// upstream's, and every frame written on a connection goes into its buffered writer, which is
// flushed once the reading side has nothing more buffered — one write per burst, where
// net/http flushes per frame. Flow control is coupled: a client is credited only as its data
// is written to the upstream, and an upstream only as its data is written to the client, so a
// stream buffers at most the window the proxy advertised.
//
// A connection is relayed only when every route it could take is one the relay serves (see
// Eligible); otherwise the listener hands it to net/http as before.
package h2relay

import (
	"os"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/httpproxy"
	"github.com/knit-mesh/knit/proxy/route"
)

// EnvSwitch turns the relay off for a knit-proxy process ("off"): every HTTP/2 connection then
// goes through net/http. It is on by default.
const EnvSwitch = "KNIT_H2_RELAY"

// EnabledByEnvironment reports whether the process environment leaves the relay on.
func EnabledByEnvironment() bool { return os.Getenv(EnvSwitch) != "off" }

// Server relays the HTTP/2 connections of one listener.
type Server struct {
	handler *httpproxy.Handler
	log     logr.Logger
	limits  atomic.Pointer[config.ListenerLimits]

	mu       sync.Mutex
	sessions map[*session]struct{}
	draining bool
}

// NewServer relays for the listener whose routes and observers h holds.
func NewServer(h *httpproxy.Handler, limits config.ListenerLimits, log logr.Logger) *Server {
	s := &Server{handler: h, log: log, sessions: map[*session]struct{}{}}
	s.limits.Store(&limits)
	return s
}

// SetLimits applies a reload's limits to connections that start from now on.
func (s *Server) SetLimits(l config.ListenerLimits) { s.limits.Store(&l) }

// Eligible says whether a new connection may be relayed: every route of the listener forwards
// to HTTP/2 clusters, with nothing the relay does not do — local answers (redirects, direct
// responses), virtual listeners, span export. Retries (retry.go), rewrites and header changes
// of a route or a target (headers.go) it does.
func (s *Server) Eligible() bool {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining { // retired or draining: new connections go to net/http, which asks them to leave
		return false
	}
	st := s.handler.State.Load()
	if st == nil || st.Virtual != nil || st.Routes == nil {
		return false
	}
	if obs := s.handler.Observers.Load(); obs != nil && obs.Tracer != nil {
		return false
	}
	ok := true
	st.Routes.EachRoute(func(rt *route.Route) {
		if answersLocally(rt) || len(rt.Targets) == 0 {
			ok = false
			return
		}
		for _, t := range rt.Targets {
			if t.Cluster == nil || t.Cluster.Spec.Protocol != config.ClusterHTTP2 {
				ok = false
				return
			}
		}
	})
	return ok
}

// Reconsider is called after a reload: when the listener's routes now need something the relay
// does not do, every relayed connection gets GOAWAY, finishes its open streams and closes, and
// the client's next connection goes through net/http.
func (s *Server) Reconsider() {
	if s.Eligible() {
		return
	}
	for _, ss := range s.all() {
		ss.goAway()
	}
}

func (s *Server) all() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		all = append(all, ss)
	}
	return all
}

// Drain sends GOAWAY on every relayed connection; each closes once its streams have ended.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	for _, ss := range s.all() {
		ss.goAway()
	}
}

func (s *Server) track(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.sessions[ss] = struct{}{}
	return true
}

func (s *Server) untrack(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

var served atomic.Uint64

// Served is how many connections the relays of this process have taken (tests and debugging).
func Served() uint64 { return served.Load() }
