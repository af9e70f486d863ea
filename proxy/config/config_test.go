package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const valid = `
admin: {address: "127.0.0.1:15000"}
listeners:
- name: in
  address: 127.0.0.1:15001
  routeConfig: main
  tcpCluster: db
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - name: api
      match: {prefix: /api, methods: [GET], headers: [{name: x-user, exact: bob}]}
      timeout: 2s
      retry: {attempts: 2}
      clusters: [{name: web, weight: 90}, {name: web2, weight: 10}]
clusters:
- name: web
  endpoints: [{address: "127.0.0.1:8080"}]
- name: web2
  lbPolicy: round_robin
  outlierDetection: {consecutive5xx: 5}
- name: db
  protocol: tcp
  endpoints: [{address: "127.0.0.1:5432"}]
assignments:
- cluster: web2
  endpoints: [{address: "127.0.0.1:8081", weight: 3}]
`

func TestParseValidAppliesDefaults(t *testing.T) {
	b, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	l := b.Listeners[0]
	if l.Direction != Inbound || l.Protocol != ListenerAuto || l.DetectTimeout.D() != DefaultDetectTimeout || l.Limits.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Fatalf("listener defaults: %+v", l)
	}
	r := b.RouteConfigs[0].VirtualHosts[0].Routes[0]
	if r.Timeout.D() != 2*time.Second || r.Retry.Backoff.Base.D() != DefaultBackoffBase || len(r.Retry.Methods) == 0 {
		t.Fatalf("route: %+v", r)
	}
	if c := b.Clusters[0]; c.Protocol != ClusterHTTP1 || c.LBPolicy != LBP2CEWMA || c.RetryBudget.Ratio != DefaultBudgetRatio {
		t.Fatalf("cluster defaults: %+v", c)
	}
	if eps := b.EndpointsOf("web2"); len(eps) != 1 || eps[0].Weight != 3 {
		t.Fatalf("assignment not used: %+v", eps)
	}
	if od := b.Clusters[1].OutlierDetection; od.MaxEjectionPercent != DefaultMaxEjectionPercent || od.BaseEjectionTime.D() != DefaultBaseEjection {
		t.Fatalf("outlier defaults: %+v", od)
	}
}

func TestValidationNamesTheBadField(t *testing.T) {
	cases := []struct{ edit, old, want string }{
		{"unknown field", "  routeConfig: main\n", "unknown field \"routConfig\""},
		{"bad address", "127.0.0.1:15001", "listeners[0].address: \"nohost\" is not host:port"},
		{"unknown cluster", "{name: web2, weight: 10}", "routeConfigs[0].virtualHosts[0].routes[0].clusters[1].name: unknown cluster \"nope\""},
		{"bad lb", "lbPolicy: round_robin", "clusters[1].lbPolicy: must be p2c_ewma, round_robin or weighted, got \"random\""},
		{"bad method", "methods: [GET]", "routeConfigs[0].virtualHosts[0].routes[0].match.methods[0]: \"FETCH\" is not an HTTP method"},
		{"bad duration", "timeout: 2s", "invalid duration \"soon\""},
		{"tcp cluster on route", "{name: web, weight: 90}", "clusters[0].name: cluster \"db\" is tcp"},
		{"bad prefix", "prefix: /api", "match.prefix: \"api\" must start with /"},
		{"bad eject pct", "consecutive5xx: 5", "clusters[1].outlierDetection.maxEjectionPercent: must be between 0 and 100, got 150"},
		{"unknown assignment", "- cluster: web2", "assignments[0].cluster: unknown cluster \"ghost\""},
		{"bad retry on", "retry: {attempts: 2}", "routes[0].retry.retryOn[0]: must be 5xx"},
		{"negative drain delay", `admin: {address: "127.0.0.1:15000"}`, "drain.delay: must not be negative"},
	}
	replacements := map[string]string{
		"unknown field":        "  routConfig: main\n",
		"bad address":          "nohost",
		"unknown cluster":      "{name: nope, weight: 10}",
		"bad lb":               "lbPolicy: random",
		"bad method":           "methods: [FETCH]",
		"bad duration":         "timeout: soon",
		"tcp cluster on route": "{name: db, weight: 90}",
		"bad prefix":           "prefix: api",
		"bad eject pct":        "consecutive5xx: 5, maxEjectionPercent: 150",
		"unknown assignment":   "- cluster: ghost",
		"bad retry on":         "retry: {attempts: 2, retryOn: [sometimes]}",
		"negative drain delay": "admin: {address: \"127.0.0.1:15000\"}\ndrain: {delay: -1s}",
	}
	for _, c := range cases {
		t.Run(c.edit, func(t *testing.T) {
			in := strings.Replace(valid, c.old, replacements[c.edit], 1)
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v", c.want, err)
			}
		})
	}
}

func TestValidationReportsAllErrors(t *testing.T) {
	_, err := Parse([]byte("listeners: [{name: a, address: x}, {name: a, address: y, protocol: udp}]\nclusters: []\n"))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"listeners[0].address", "listeners[1].name: duplicate", "listeners[1].protocol"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestLoadFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte(valid), 0o600)
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p + ".missing"); err == nil || !strings.Contains(err.Error(), "open config") {
		t.Fatalf("missing file: %v", err)
	}
}

// A route without a timeout gets DefaultRouteTimeout; "timeout: 0s" turns
// it off (long streams), and the choice survives the /config round trip.
func TestRouteTimeoutDefaultAndExplicitNone(t *testing.T) {
	cfg := strings.Replace(valid, "      timeout: 2s\n", "", 1)
	b, err := Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	r := b.RouteConfigs[0].VirtualHosts[0].Routes[0]
	if r.RouteTimeout() != DefaultRouteTimeout {
		t.Fatalf("unset timeout: %v, want %v", r.RouteTimeout(), DefaultRouteTimeout)
	}
	b, err = Parse([]byte(strings.Replace(valid, "timeout: 2s", "timeout: 0s", 1)))
	if err != nil {
		t.Fatal(err)
	}
	r = b.RouteConfigs[0].VirtualHosts[0].Routes[0]
	if r.RouteTimeout() != 0 {
		t.Fatalf("timeout: 0s gave %v, want none", r.RouteTimeout())
	}
	out, _ := json.Marshal(b)
	b2, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := b2.RouteConfigs[0].VirtualHosts[0].Routes[0].RouteTimeout(); got != 0 {
		t.Fatalf("after a round trip: %v", got)
	}
}

func TestSlowPeerLimitsHaveDefaults(t *testing.T) {
	b, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	l, c := b.Listeners[0].Limits, b.Clusters[0]
	if l.RequestBodyIdleTimeout.D() != DefaultRequestBodyIdleTimeout || l.ResponseWriteTimeout.D() != DefaultResponseWriteTimeout {
		t.Fatalf("listener limits: %+v", l)
	}
	if c.MaxConnectionsPerEndpoint != DefaultMaxConnsPerEndpoint || c.IdleTimeout.D() != DefaultUpstreamIdleTimeout ||
		c.MaxResponseHeaderBytes != DefaultMaxResponseHeaderBytes {
		t.Fatalf("cluster limits: %+v", c)
	}
	if DefaultUpstreamIdleTimeout >= 5*time.Second {
		t.Fatalf("upstream idle timeout %v is not below Node.js's 5s keep-alive", DefaultUpstreamIdleTimeout)
	}
}
