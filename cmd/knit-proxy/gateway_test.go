package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/httpproxy"
	"github.com/knit-mesh/knit/proxy/identity/identitytest"
	"github.com/knit-mesh/knit/proxy/metrics"
)

const (
	gatewayID = "spiffe://cluster.local/ns/infra/sa/edge-knit"
	backendID = "spiffe://cluster.local/ns/shop/sa/web"
)

// proxyEnv is the environment the operator (gateway) or the injector (sidecar) gives a proxy
// whose control plane is ca.
func proxyEnv(t *testing.T, ca *identitytest.CA, id, mode string) func(string) string {
	t.Helper()
	dir := t.TempDir()
	token, bundle := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(token, []byte(identitytest.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, []byte(identitytest.PEM(ca.Root)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KNIT_CONTROL_PLANE": ca.Addr, "KNIT_IDENTITY_ADDRESS": ca.Addr, "KNIT_IDENTITY": id,
		"KNIT_TOKEN_FILE": token, "KNIT_TRUST_BUNDLE": bundle, "KNIT_MTLS_MODE": mode, "KNIT_GATEWAY": "infra/edge"}
	return func(k string) string { return env[k] }
}

// strictBackend is a meshed backend under STRICT: its sidecar (the sidecar's own identity and
// inbound mutual TLS code) refuses plaintext and hands the app the caller's SPIFFE ID. It
// returns the sidecar's inbound address and its metrics.
func strictBackend(t *testing.T, ca *identitytest.CA) (string, *metrics.Metrics) {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "backend peer="+r.Header.Get(httpproxy.PeerIdentityHeader))
	}))
	t.Cleanup(app.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := proxyEnv(t, ca, backendID, "STRICT")
	m := metrics.New()
	ident, err := startWorkloadIdentity(ctx, logr.Discard(), env, m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	p := dataplane.New(logr.Discard(), m)
	if p.Inbound, err = inboundMTLS(logr.Discard(), env, ident, m.Registry); err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort(strings.TrimPrefix(app.URL, "http://"))
	p.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return dst, nil }
	cfg, err := config.Parse([]byte(`
listeners:
- {name: inbound, address: "127.0.0.1:0", direction: inbound, originalDestination: true, detectTimeout: 200ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drain(p) })
	waitFor(t, "the backend's certificate", ident.Ready)
	return p.ListenerAddr("inbound").String(), m
}

func drain(p *dataplane.Proxy) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.Drain(ctx)
}

// gatewayRoutes is what the control plane sends a gateway proxy: a bound listener whose routes
// reach a meshed backend (/meshed), the same backend announced with another identity (/impostor),
// and a backend outside the mesh (/plain).
func gatewayRoutes(meshed, plain string) string {
	return fmt.Sprintf(`
listeners:
- {name: gateway_80, address: "127.0.0.1:0", direction: inbound, protocol: http, routeConfig: gw}
routeConfigs:
- name: gw
  virtualHosts:
  - name: all
    domains: ["*"]
    routes:
    - {name: meshed, match: {prefix: /meshed}, clusters: [{name: meshed}]}
    - {name: impostor, match: {prefix: /impostor}, clusters: [{name: impostor}]}
    - {name: plain, match: {prefix: /plain}, clusters: [{name: plain}]}
clusters:
- {name: meshed, protocol: http1, endpoints: [{address: "%[1]s", meshed: true, identity: "%[3]s"}]}
- {name: impostor, protocol: http1, endpoints: [{address: "%[1]s", meshed: true, identity: "spiffe://cluster.local/ns/shop/sa/admin"}]}
- {name: plain, protocol: http1, endpoints: [{address: "%[2]s"}]}
`, meshed, plain, backendID)
}

// A gateway proxy holds the Gateway's workload identity, as a sidecar holds its pod's: it
// reaches a meshed backend under STRICT over mutual TLS (the backend's sidecar names the gateway's
// SPIFFE ID to the app and counts an mTLS connection), refuses a backend that presents another
// identity than discovery announced, and speaks plaintext to backends outside the mesh.
func TestGatewayOriginatesMutualTLSToMeshedBackendsOnly(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	backend, backendMetrics := strictBackend(t, ca)
	var plainSawTLS atomic.Bool
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainSawTLS.Store(r.TLS != nil)
		io.WriteString(w, "plain peer="+r.Header.Get(httpproxy.PeerIdentityHeader))
	}))
	defer plain.Close()

	m := metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, ident, err := gatewayDataPlane(ctx, logr.Discard(), proxyEnv(t, ca, gatewayID, "STRICT"), m)
	if err != nil {
		t.Fatal(err)
	}
	if ident == nil || ident.ID() != gatewayID {
		t.Fatalf("gateway identity = %v, want %s", ident, gatewayID)
	}
	defer drain(p)
	waitFor(t, "the gateway's certificate", ident.Ready)
	cfg, err := config.Parse([]byte(gatewayRoutes(backend, strings.TrimPrefix(plain.URL, "http://"))))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway = true
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	base := "http://" + p.ListenerAddr("gateway_80").String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := get("/meshed"); code != 200 || body != "backend peer="+gatewayID {
		t.Fatalf("GET /meshed = %d %q, want 200 from the backend naming the gateway %s", code, body, gatewayID)
	}
	if n := inboundConns(t, backendMetrics, "mtls", gatewayID); n < 1 {
		t.Fatalf("the backend's sidecar counted %v mTLS connections from %s", n, gatewayID)
	}
	if n := inboundConns(t, backendMetrics, "refused", ""); n != 0 {
		t.Fatalf("the backend refused %v connections from the gateway", n)
	}
	if code, body := get("/impostor"); code != http.StatusBadGateway {
		t.Fatalf("GET /impostor = %d %q, want 502: the backend is not the identity discovery announced", code, body)
	}
	if code, body := get("/plain"); code != 200 || body != "plain peer=" || plainSawTLS.Load() {
		t.Fatalf("GET /plain = %d %q (TLS %v), want 200 in plaintext without a peer identity", code, body, plainSawTLS.Load())
	}
}

func TestGatewayNeedsItsIdentity(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"KNIT_CONTROL_PLANE": "cp.knit-system.svc:15010", "KNIT_GATEWAY": "infra/edge"}[k]
	}
	_, err := gatewayConfig(sidecarFlags{adminPort: 15020, localAdminPort: 15000}, env)
	if err == nil || !strings.Contains(err.Error(), "KNIT_IDENTITY is required with --gateway") {
		t.Fatalf("gateway without KNIT_IDENTITY: %v", err)
	}
}

// inboundConns is the backend sidecar's knit_proxy_inbound_connections_total for one security
// and peer.
func inboundConns(t *testing.T, m *metrics.Metrics, security, peer string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "knit_proxy_inbound_connections_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["security"] == security && labels["peer_identity"] == peer {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// A configured gateway proxy is Ready only once it holds the Gateway's certificate: before it,
// meshed backends under STRICT would refuse it.
func TestGatewayIsReadyOnlyWithItsCertificate(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	other := "spiffe://cluster.local/ns/infra/sa/default"
	ca.IssueFor.Store(&other) // the identity service answers for another identity until told otherwise
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, ident, err := gatewayDataPlane(ctx, logr.Discard(), proxyEnv(t, ca, gatewayID, "STRICT"), metrics.New())
	if err != nil {
		t.Fatal(err)
	}
	defer drain(p)
	cfg, err := config.Parse([]byte(gatewayRoutes("127.0.0.1:1", "127.0.0.1:2")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway = true
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	state := proxyState{p, ident}
	waitFor(t, "a refused certificate", func() bool { return ca.Issued.Load() >= 1 })
	if !p.Ready() || state.Ready() {
		t.Fatalf("configured %v, Ready %v: want a configured gateway without its certificate not Ready", p.Ready(), state.Ready())
	}
	ca.IssueFor.Store(nil)
	waitFor(t, "Ready with the certificate", state.Ready)
}

func TestGatewayConfigDrainsAfterADelay(t *testing.T) {
	env := map[string]string{"KNIT_CONTROL_PLANE": "knit-controlplane.knit-system.svc:15010", "KNIT_GATEWAY": "shop/edge",
		"KNIT_IDENTITY": "spiffe://cluster.local/ns/shop/sa/edge-knit"}
	cfg, err := gatewayConfig(sidecarFlags{adminPort: 15020, localAdminPort: 15000}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.ProbeAddress != ":15020" || cfg.Admin.Address != "127.0.0.1:15000" || !cfg.Gateway || len(cfg.Listeners) != 0 {
		t.Fatalf("%+v", cfg)
	}
	// Clients reach a gateway through its Service: it keeps accepting while its endpoint leaves.
	if d := cfg.Drain.Delay.D(); d != gatewayDrainDelay || d <= 0 {
		t.Fatalf("drain delay %s, want %s", d, gatewayDrainDelay)
	}

	for _, tc := range []struct {
		f    sidecarFlags
		env  map[string]string
		want string
	}{
		{sidecarFlags{adminPort: 15000, localAdminPort: 15000}, env, "--admin-port and --local-admin-port must differ"},
		{sidecarFlags{adminPort: 15020, localAdminPort: 15000}, map[string]string{"KNIT_GATEWAY": "shop/edge"}, "KNIT_CONTROL_PLANE is required with --gateway"},
		{sidecarFlags{adminPort: 15020, localAdminPort: 15000}, map[string]string{"KNIT_CONTROL_PLANE": "cp:15010"}, "KNIT_GATEWAY is required with --gateway"},
	} {
		_, err := gatewayConfig(tc.f, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v %v: want error containing %q, got %v", tc.f, tc.env, tc.want, err)
		}
	}
}

// A gateway proxy reports as the Mesh's observability says, read from the same environment as
// a sidecar's.
func TestGatewayConfigTakesTheMeshsObservability(t *testing.T) {
	env := map[string]string{"KNIT_CONTROL_PLANE": "cp:15010", "KNIT_GATEWAY": "shop/edge", "KNIT_IDENTITY": gatewayID,
		"KNIT_ACCESS_LOG": "Text", "KNIT_TRACING_ENDPOINT": "collector:4317", "KNIT_TRACING_SAMPLING_PERCENT": "10",
		"KNIT_TRACING_SERVICE_NAME": "edge.shop", "KNIT_METRICS": "off"}
	cfg, err := gatewayConfig(sidecarFlags{adminPort: 15020, localAdminPort: 15000}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.AccessLog.Enabled || cfg.AccessLog.Format != config.AccessLogText || cfg.Tracing.OTLPEndpoint != "collector:4317" ||
		cfg.Tracing.ServiceName != "edge.shop" || *cfg.Tracing.SamplingRatio != 0.1 || !cfg.Admin.NoMetrics {
		t.Fatalf("access log %+v, tracing %+v, noMetrics %v", cfg.AccessLog, cfg.Tracing, cfg.Admin.NoMetrics)
	}
	env["KNIT_ACCESS_LOG"] = "yaml"
	if _, err := gatewayConfig(sidecarFlags{adminPort: 15020, localAdminPort: 15000}, func(k string) string { return env[k] }); err == nil ||
		!strings.Contains(err.Error(), "KNIT_ACCESS_LOG") {
		t.Fatalf("a bad KNIT_ACCESS_LOG: %v", err)
	}
}
