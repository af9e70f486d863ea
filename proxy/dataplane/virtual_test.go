package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
)

// serviceVIP stands for a Service's ClusterIP:port: nothing listens there,
// connections "to" it reach the proxy through the injected original destination.
const serviceVIP = "10.96.0.10:80"

// startVirtual runs a sidecar-shaped proxy (an outbound originalDestination
// listener) with the given extra config; *dst is every connection's
// original destination.
func startVirtual(t *testing.T, extra string) (*Proxy, *atomic.Pointer[netip.AddrPort]) {
	t.Helper()
	return startVirtualDetecting(t, patientDetectTimeout, extra)
}

// virtualDetectTimeouts holds each virtual-listener proxy's detection timeout, for applyVirtual.
var virtualDetectTimeouts sync.Map // *Proxy → time.Duration

// startVirtualDetecting is startVirtual with the outbound listener's detection timeout: short
// only where a test needs it to time out (a server that speaks first), else patientDetectTimeout.
func startVirtualDetecting(t *testing.T, detect time.Duration, extra string) (*Proxy, *atomic.Pointer[netip.AddrPort]) {
	t.Helper()
	var dst atomic.Pointer[netip.AddrPort]
	p := New(logr.Discard(), metrics.New())
	virtualDetectTimeouts.Store(p, detect)
	t.Cleanup(func() { virtualDetectTimeouts.Delete(p) })
	p.OriginalDst = func(net.Conn) (netip.AddrPort, error) {
		if d := dst.Load(); d != nil {
			return *d, nil
		}
		return netip.AddrPort{}, errors.New("no original destination")
	}
	applyVirtual(t, p, extra)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	})
	setDst(&dst, serviceVIP)
	return p, &dst
}

func applyVirtual(t *testing.T, p *Proxy, extra string) {
	t.Helper()
	detect, _ := virtualDetectTimeouts.Load(p)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
listeners:
- {name: outbound, address: "127.0.0.1:0", direction: outbound, originalDestination: true, detectTimeout: %s}
`, detect) + extra))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// noFollow never follows redirects (Gateway API: the proxy answers them,
// the client decides) and opens a connection per request, so each one looks
// up the current original destination.
func noFollow() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// named answers with its name, and what it received.
func named(t *testing.T, name string) string {
	return httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Remove-Me", "1")
		fmt.Fprintf(w, "%s %s %s host=%s add=%s set=%s gone=%q", name, r.Method, r.URL.RequestURI(), r.Host,
			strings.Join(r.Header.Values("X-Add"), ","), r.Header.Get("X-Set"), r.Header.Get("X-Drop"))
	})
}

func TestVirtualListenerBalancesHTTPOverServiceEndpointsAndPassesOtherDestinationsThrough(t *testing.T) {
	a, b, outside := named(t, "a"), named(t, "b"), named(t, "outside")
	p, dst := startVirtual(t, fmt.Sprintf(`
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts: [{name: svc, domains: ["*"], routes: [{name: all, match: {pathPrefix: /}, clusters: [{name: svc}]}]}]
clusters:
- name: svc
  endpoints: [{address: %q}, {address: %q}]
`, serviceVIP, a, b))
	c := noFollow()
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		_, body := do(t, c, "GET", "http://"+addr(t, p, "outbound")+"/x")
		seen[strings.Fields(body)[0]]++
	}
	if seen["a"] == 0 || seen["b"] == 0 || len(seen) != 2 {
		t.Fatalf("requests to the Service's address were not spread over its endpoints: %v", seen)
	}
	setDst(dst, outside)
	if _, body := do(t, c, "GET", "http://"+addr(t, p, "outbound")+"/x"); !strings.HasPrefix(body, "outside ") {
		t.Fatalf("a destination with no virtual listener was not passed through: %q", body)
	}
}

func TestVirtualListenerMatchesGatewayAPIStyle(t *testing.T) {
	exact, prefix, regex, hdr, query, method, fallback := named(t, "exact"), named(t, "prefix"), named(t, "regex"),
		named(t, "header"), named(t, "query"), named(t, "method"), named(t, "fallback")
	p, _ := startVirtual(t, fmt.Sprintf(`
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts:
  - name: svc
    routes:
    - {name: exact, match: {path: /exact}, clusters: [{name: exact}]}
    - {name: prefix, match: {pathPrefix: /foo/}, clusters: [{name: prefix}]}
    - {name: regex, match: {regex: "/v[0-9]+/items"}, clusters: [{name: regex}]}
    - {name: header, match: {headers: [{name: X-Version, regex: "v[23]"}]}, clusters: [{name: header}]}
    - {name: query, match: {queryParams: [{name: env, exact: canary}, {name: id, regex: "[0-9]+"}]}, clusters: [{name: query}]}
    - {name: method, match: {methods: [DELETE]}, clusters: [{name: method}]}
    - {name: fallback, match: {pathPrefix: /}, clusters: [{name: fallback}]}
clusters:
- {name: exact, endpoints: [{address: %q}]}
- {name: prefix, endpoints: [{address: %q}]}
- {name: regex, endpoints: [{address: %q}]}
- {name: header, endpoints: [{address: %q}]}
- {name: query, endpoints: [{address: %q}]}
- {name: method, endpoints: [{address: %q}]}
- {name: fallback, endpoints: [{address: %q}]}
`, serviceVIP, exact, prefix, regex, hdr, query, method, fallback))
	c := noFollow()
	base := "http://" + addr(t, p, "outbound")
	for _, tc := range []struct {
		method, path string
		hdr          []string
		want         string
	}{
		{"GET", "/exact", nil, "exact"},
		{"GET", "/exact/", nil, "fallback"},
		{"GET", "/foo", nil, "prefix"},
		{"GET", "/foo/", nil, "prefix"},
		{"GET", "/foo/bar", nil, "prefix"},
		{"GET", "/foobar", nil, "fallback"}, // PathPrefix matches whole segments
		{"GET", "/v12/items", nil, "regex"},
		{"GET", "/v12/items/1", nil, "fallback"}, // the regex must match the whole path
		{"GET", "/h", []string{"X-Version", "v3"}, "header"},
		{"GET", "/h", []string{"x-version", "v33"}, "fallback"},
		{"GET", "/q?env=canary&id=42", nil, "query"},
		{"GET", "/q?env=canary&id=x42", nil, "fallback"},
		{"GET", "/q?id=42&env=canary&env=prod", nil, "query"}, // the first value counts
		{"GET", "/q?env=prod&env=canary&id=42", nil, "fallback"},
		{"DELETE", "/m", nil, "method"},
	} {
		_, body := do(t, c, tc.method, base+tc.path, tc.hdr...)
		if got := strings.Fields(body)[0]; got != tc.want {
			t.Errorf("%s %s %v: routed to %q, want %q", tc.method, tc.path, tc.hdr, got, tc.want)
		}
	}
}

func TestVirtualListenerRouteActions(t *testing.T) {
	up := named(t, "up")
	p, _ := startVirtual(t, fmt.Sprintf(`
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts:
  - name: svc
    routes:
    - {name: r301, match: {path: /301}, redirect: {scheme: https, code: 301}}
    - {name: r302, match: {path: /302}, redirect: {host: other.example, port: 8443}}
    - {name: r303, match: {path: /303}, redirect: {path: /new, code: 303}}
    - {name: r307, match: {pathPrefix: /old}, redirect: {prefixRewrite: /new, code: 307}}
    - {name: r308, match: {pathPrefix: /strip}, redirect: {prefixRewrite: /, port: 80, code: 308}}
    - {name: rw-prefix, match: {pathPrefix: /api}, rewrite: {prefixRewrite: /v2, host: rewritten.example}, clusters: [{name: up}]}
    - {name: rw-full, match: {pathPrefix: /full}, rewrite: {fullPath: /replaced}, clusters: [{name: up}]}
    - name: headers
      match: {path: /headers}
      clusters: [{name: up}]
      requestHeaders: {add: [{name: X-Add, value: added}], set: [{name: X-Set, value: set}], remove: [X-Drop]}
      responseHeaders: {add: [{name: X-Resp, value: r}], remove: [X-Remove-Me]}
    - {name: direct, match: {path: /direct}, directResponse: {status: 503, body: "maintenance"}}
    - {name: unresolved, match: {path: /unresolved}, clusters: [{name: ""}]}
clusters:
- {name: up, endpoints: [{address: %q}]}
`, serviceVIP, up))
	c := noFollow()
	base := "http://" + addr(t, p, "outbound")
	for _, tc := range []struct {
		path, host string
		code       int
		location   string
	}{
		{"/301?a=1", "svc.ns:8080", 301, "https://svc.ns/301?a=1"},
		{"/302", "svc.ns:8080", 302, "http://other.example:8443/302"},
		{"/303", "svc.ns", 303, "http://svc.ns/new"},
		{"/old/x/y", "svc.ns", 307, "http://svc.ns/new/x/y"},
		{"/old", "svc.ns:8080", 307, "http://svc.ns:8080/new"},
		{"/strip/x", "svc.ns:8080", 308, "http://svc.ns/x"},
	} {
		resp, _ := do(t, c, "GET", base+tc.path, "Host", tc.host)
		if resp.StatusCode != tc.code || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s (Host %s): %d %q, want %d %q", tc.path, tc.host, resp.StatusCode, resp.Header.Get("Location"), tc.code, tc.location)
		}
	}
	if _, body := do(t, c, "GET", base+"/api/items?x=1"); body != `up GET /v2/items?x=1 host=rewritten.example add= set= gone=""` {
		t.Errorf("prefix and host rewrite: upstream saw %q", body)
	}
	if _, body := do(t, c, "GET", base+"/api"); !strings.HasPrefix(body, "up GET /v2 ") {
		t.Errorf("prefix rewrite of the bare prefix: upstream saw %q", body)
	}
	if _, body := do(t, c, "GET", base+"/full/a/b", "Host", "svc"); body != `up GET /replaced host=svc add= set= gone=""` {
		t.Errorf("full path rewrite: upstream saw %q", body)
	}
	resp, body := do(t, c, "GET", base+"/headers", "X-Add", "orig", "X-Set", "old", "X-Drop", "secret")
	if !strings.HasSuffix(body, `add=orig,added set=set gone=""`) {
		t.Errorf("request header modifier: upstream saw %q", body)
	}
	if resp.Header.Get("X-Resp") != "r" || resp.Header.Get("X-Remove-Me") != "" || resp.Header.Get("X-Backend") != "up" {
		t.Errorf("response header modifier: %v", resp.Header)
	}
	if resp, body := do(t, c, "GET", base+"/direct"); resp.StatusCode != 503 || body != "maintenance" {
		t.Errorf("direct response: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, c, "GET", base+"/unresolved"); resp.StatusCode != 500 {
		t.Errorf("unresolved backend: %d, want 500", resp.StatusCode)
	}
}

func TestVirtualListenerBalancesTCPOverServiceEndpoints(t *testing.T) {
	who := func(name string) string {
		return tcpServer(t, func(c net.Conn) { c.Write([]byte(name)); io.Copy(io.Discard, c) })
	}
	a, b := who("a"), who("b")
	p, _ := startVirtualDetecting(t, 200*time.Millisecond, fmt.Sprintf(`
virtualListeners:
- {name: db, address: %q, tcpCluster: db}
clusters:
- {name: db, protocol: tcp, lbPolicy: round_robin, endpoints: [{address: %q}, {address: %q}]}
`, serviceVIP, a, b))
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		c, err := net.Dial("tcp", addr(t, p, "outbound"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil { // server speaks first: detection times out to opaque
			t.Fatal(err)
		}
		seen[string(buf)]++
		c.Close()
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("TCP connections to the Service's address were not spread over its endpoints: %v", seen)
	}
}

func TestEndpointHealthDecidesWhoTakesTraffic(t *testing.T) {
	healthy, unhealthy, draining := named(t, "healthy"), named(t, "unhealthy"), named(t, "draining")
	tmpl := `
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts: [{name: svc, routes: [{name: all, clusters: [{name: svc}]}]}]
clusters:
- {name: svc, lbPolicy: round_robin}
assignments:
- cluster: svc
  endpoints: [%s]
`
	p, _ := startVirtual(t, fmt.Sprintf(tmpl, serviceVIP, fmt.Sprintf(
		`{address: %q, health: healthy}, {address: %q, health: unhealthy}, {address: %q, health: draining}`, healthy, unhealthy, draining)))
	c := noFollow()
	count := func() map[string]int {
		seen := map[string]int{}
		for i := 0; i < 12; i++ {
			_, body := do(t, c, "GET", "http://"+addr(t, p, "outbound")+"/")
			seen[strings.Fields(body)[0]]++
		}
		return seen
	}
	if seen := count(); seen["healthy"] != 12 {
		t.Fatalf("with a healthy endpoint, only it takes traffic: %v", seen)
	}
	applyVirtual(t, p, fmt.Sprintf(tmpl, serviceVIP, fmt.Sprintf(
		`{address: %q, health: unhealthy}, {address: %q, health: draining}`, unhealthy, draining)))
	if seen := count(); seen["draining"] != 12 {
		t.Fatalf("with no healthy endpoint, draining ones take traffic and unhealthy ones never: %v", seen)
	}
}

func TestRetriableStatusCodesAreRetried(t *testing.T) {
	var calls atomic.Int32
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusConflict)
			return
		}
		io.WriteString(w, "second try")
	})
	p, _ := startVirtual(t, fmt.Sprintf(`
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts:
  - name: svc
    routes:
    - {name: r, clusters: [{name: up}], retry: {attempts: 1, retryOn: [retriable-status-codes], statusCodes: [409], backoff: {base: 1ms, max: 1ms}}}
clusters:
- {name: up, endpoints: [{address: %q}]}
`, serviceVIP, up))
	if resp, body := do(t, noFollow(), "GET", "http://"+addr(t, p, "outbound")+"/"); resp.StatusCode != 200 || body != "second try" || calls.Load() != 2 {
		t.Fatalf("%d %q after %d calls; want the 409 retried", resp.StatusCode, body, calls.Load())
	}
}

// Gateway API backendRequest timeout: each attempt is bounded; a slow one
// is retried as a 504 would be, on the HTTP/1.1 fast path and on the
// http.Transport path (h2c) alike.
func TestPerTryTimeoutRetriesASlowAttempt(t *testing.T) {
	for _, proto := range []string{"http1", "http2"} {
		t.Run(proto, func(t *testing.T) {
			var calls atomic.Int32
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) == 1 {
					select { // hold the first attempt until the proxy gives up on it
					case <-r.Context().Done():
					case <-time.After(20 * time.Second):
					}
					return
				}
				io.WriteString(w, "second try")
			})
			up := httpUpstream(t, h)
			if proto == "http2" {
				up = h2cUpstream(t, h)
			}
			p, _ := startVirtual(t, fmt.Sprintf(`
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts:
  - name: svc
    routes:
    - {name: retried, match: {path: /retried}, clusters: [{name: up}], timeout: 30s,
       retry: {attempts: 1, retryOn: [gateway-error], perTryTimeout: 200ms, backoff: {base: 1ms, max: 1ms}}}
    - {name: once, match: {path: /once}, clusters: [{name: up}], timeout: 30s,
       retry: {attempts: 1, retryOn: [connect-failure], perTryTimeout: 200ms}}
clusters:
- {name: up, protocol: %s, endpoints: [{address: %q}]}
`, serviceVIP, proto, up))
			if resp, body := do(t, noFollow(), "GET", "http://"+addr(t, p, "outbound")+"/retried"); resp.StatusCode != 200 || body != "second try" {
				t.Fatalf("%d %q after %d calls; want the slow attempt cut and retried", resp.StatusCode, body, calls.Load())
			}
			calls.Store(0)
			if resp, _ := do(t, noFollow(), "GET", "http://"+addr(t, p, "outbound")+"/once"); resp.StatusCode != 504 || calls.Load() != 1 {
				t.Fatalf("%d after %d calls; want 504 from the one slow attempt (retryOn has no timeout condition)", resp.StatusCode, calls.Load())
			}
		})
	}
}

// A keep-alive connection to a Service address follows reloads per
// request: new routes apply to it, and once the virtual listener is gone
// its requests go to the original destination itself.
func TestVirtualListenerReloadReachesOpenConnections(t *testing.T) {
	a, b, direct := named(t, "a"), named(t, "b"), named(t, "direct")
	tmpl := `
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts: [{name: svc, routes: [{name: all, clusters: [{name: svc}]}]}]
clusters:
- {name: svc, endpoints: [{address: %q}]}
`
	// The "Service address" is a real server, so the passthrough fallback is observable.
	p, dst := startVirtual(t, fmt.Sprintf(tmpl, direct, a))
	setDst(dst, direct)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	url := "http://" + addr(t, p, "outbound") + "/"
	var reused []bool
	send := func() string {
		req, _ := http.NewRequest("GET", url, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) }}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return strings.Fields(string(body))[0]
	}
	if got := send(); got != "a" {
		t.Fatalf("first request: %q", got)
	}
	applyVirtual(t, p, fmt.Sprintf(tmpl, direct, b))
	if got := send(); got != "b" {
		t.Fatalf("after a reload, the open connection's next request: %q, want the new endpoint", got)
	}
	applyVirtual(t, p, "")
	if got := send(); got != "direct" {
		t.Fatalf("after the virtual listener is removed: %q, want the original destination", got)
	}
	if len(reused) != 3 || reused[1] != true || reused[2] != true {
		t.Fatalf("the requests must share one connection: reused %v", reused)
	}
}

// Gateway API backendRef filters: each weighted target's header modifiers
// apply only to the requests (and responses) of that target.
func TestBackendHeaderModifiersApplyToTheirTargetOnly(t *testing.T) {
	echo := func(name string) string {
		return httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s tag=%s route=%s", name, r.Header.Get("X-Tag"), r.Header.Get("X-Route"))
		})
	}
	a, b := echo("a"), echo("b")
	p, _ := startVirtual(t, fmt.Sprintf(`
virtualListeners:
- {name: svc, address: %q, routeConfig: svc}
routeConfigs:
- name: svc
  virtualHosts:
  - name: svc
    routes:
    - name: split
      requestHeaders: {set: [{name: X-Route, value: r}]}
      clusters:
      - {name: a, weight: 1, requestHeaders: {set: [{name: X-Tag, value: for-a}]}, responseHeaders: {add: [{name: X-From, value: a}]}}
      - {name: b, weight: 1}
clusters:
- {name: a, endpoints: [{address: %q}]}
- {name: b, endpoints: [{address: %q}]}
`, serviceVIP, a, b))
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		resp, body := do(t, noFollow(), "GET", "http://"+addr(t, p, "outbound")+"/")
		switch body {
		case "a tag=for-a route=r":
			if resp.Header.Get("X-From") != "a" {
				t.Fatalf("target a's response modifier missing: %v", resp.Header)
			}
		case "b tag= route=r":
			if resp.Header.Get("X-From") != "" {
				t.Fatalf("target a's response modifier applied to b: %v", resp.Header)
			}
		default:
			t.Fatalf("unexpected: %q", body)
		}
		seen[body[:1]]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("split not exercised: %v", seen)
	}
}
