package httpproxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr/funcr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/route"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// A bug in the request path must not vanish: net/http recovers the panic
// and closes the connection, and the proxy's own log records it with a stack.
func TestPanicInRequestPathIsLogged(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		logged = append(logged, args)
		mu.Unlock()
	}, funcr.Options{})
	m := metrics.New()
	// A cluster built by hand without a picker: picking an endpoint panics.
	// (A missing cluster is not a bug: it answers 500.)
	rc := config.RouteConfig{Name: "main", VirtualHosts: []config.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []config.Route{{Name: "broken", Clusters: []config.WeightedTarget{{Name: "gone", Weight: 1}}}}}}}
	h := &Handler{Observers: &atomic.Pointer[Observers]{}, NoRoute: m.For("inbound", "", ""), Log: log}
	h.Observers.Store(&Observers{})
	h.State.Store(&State{Direction: config.Inbound, Routes: route.Compile(rc, map[string]*upstream.Cluster{"gone": {Name: "gone"}}, m)})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/x")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got a response (%d) from a panicking handler", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(logged, "\n")
	if !strings.Contains(all, "recovered a panic") || !strings.Contains(all, `"path"="/x"`) || !strings.Contains(all, "goroutine") {
		t.Fatalf("panic not logged with its stack:\n%s", all)
	}
}

func TestGRPCMessageIsPercentEncoded(t *testing.T) {
	for in, want := range map[string]string{
		"no healthy upstream": "no healthy upstream",
		"100% done":           "100%25 done",
		"caf\u00e9\n":         "caf%C3%A9%0A",
		"\x7f\x00":            "%7F%00",
	} {
		if got := GRPCMessage(in); got != want {
			t.Errorf("grpcMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
