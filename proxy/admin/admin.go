// Package admin serves the proxy's own endpoints. The full admin port serves
// /live, /ready, /metrics, /config (current config as JSON) and /debug/pprof;
// a probe port serves only /live, /ready and /metrics (plus the sidecar's
// /app-health/), so that it may listen on the pod network while /config and
// pprof stay on loopback.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/knit-mesh/knit/internal/buildinfo"
)

// State is what the admin endpoints report on.
type State interface {
	Ready() bool
	CurrentConfig() any
}

// Scope is what one admin port serves.
type Scope int

const (
	// Full serves everything, /config and /debug/pprof/ included: bind it to loopback.
	Full Scope = iota
	// Probes serves only /live, /ready, /metrics and the extra handlers.
	Probes
)

// Server is the admin HTTP server.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Start listens on addr. extra adds handlers (the sidecar's /app-health/). A nil reg
// serves no /metrics.
func Start(addr string, scope Scope, st State, reg *prometheus.Registry, extra ...func(*http.ServeMux)) (*Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !st.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if reg != nil { // nil: metrics are turned off
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	// The release this proxy was built as, so an upgrade can be checked against the proxy
	// itself rather than against the pod's spec.
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(buildinfo.Version + "\n"))
	})
	if scope == Full {
		mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(st.CurrentConfig())
		})
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	for _, f := range extra {
		f(mux)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}}
	go s.srv.Serve(ln)
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server; a nil server is a no-op.
func (s *Server) Close(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
