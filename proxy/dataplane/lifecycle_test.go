package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/knit-mesh/knit/proxy/admin"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/trace"
)

// twoClusterConfig routes everything to cluster `to`, with listener limits
// that vary so a reload also swaps the HTTP server generation.
func twoClusterConfig(a, b, to string, idle int) string {
	return fmt.Sprintf(`
listeners:
- name: in
  address: 127.0.0.1:0
  routeConfig: main
  limits: {idleTimeout: %ds}
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [{name: r, clusters: [{name: %s}]}]}]
clusters:
- {name: a, endpoints: [{address: %s}]}
- {name: b, endpoints: [{address: %s}]}
`, idle, to, a, b)
}

func TestReloadUnderLoadLosesNoRequest(t *testing.T) {
	a := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) })
	b := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("b")) })
	p := startProxy(t, twoClusterConfig(a, b, "a", 60))
	url := "http://" + addr(t, p, "in") + "/"

	stop := make(chan struct{})
	var ok, failed atomic.Int64
	seen := sync.Map{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := client()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := cl.Get(url)
				if err != nil {
					failed.Add(1)
					t.Errorf("request failed during reload: %v", err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					t.Errorf("status %d during reload", resp.StatusCode)
					return
				}
				seen.Store(string(body), true)
				ok.Add(1)
			}
		}()
	}
	// Reload 20 times while requests flow: switch clusters and server limits.
	for i := range 20 {
		target := []string{"a", "b"}[i%2]
		before := ok.Load()
		apply(t, p, twoClusterConfig(a, b, target, 60+i))
		waitFor(t, "requests to flow after a reload", func() bool { return ok.Load() > before+20 })
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed across reloads (%d succeeded)", failed.Load(), ok.Load())
	}
	_, sawA := seen.Load("a")
	_, sawB := seen.Load("b")
	if !sawA || !sawB {
		t.Fatal("reloads did not take effect")
	}
	t.Logf("%d requests, 0 failures across 20 reloads", ok.Load())
}

func TestBadReloadKeepsLastGoodConfig(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p := startProxy(t, simpleConfig(up))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := strings.Replace(simpleConfig(up), "address: 127.0.0.1:0", "address: "+taken.Addr().String(), 1)
	cfg, err := config.Parse([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(context.Background(), cfg); err == nil {
		t.Fatal("binding a taken port should fail the reload")
	}
	if code, _ := get(t, client(), "http://"+addr(t, p, "in")+"/"); code != 200 {
		t.Fatalf("old config stopped serving: %d", code)
	}
}

func TestDrainCompletesInFlightRequests(t *testing.T) {
	release := make(chan struct{})
	var inflight atomic.Int64
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		inflight.Add(1)
		<-release
		w.Write([]byte("done"))
	})
	cfg, _ := config.Parse([]byte(simpleConfig(up)))
	p := New(discard(), newMetrics())
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	a := addr(t, p, "in")
	adm, err := admin.Start("127.0.0.1:0", admin.Full, p, p.Metrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close(context.Background())

	const n = 20
	results := make(chan int, n)
	for range n {
		go func() {
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Get("http://" + a + "/")
			if err != nil {
				results <- 0
				return
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- resp.StatusCode
		}()
	}
	waitFor(t, "all requests to reach the upstream", func() bool { return inflight.Load() == n })

	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		drained <- p.Drain(ctx)
	}()
	// Draining: not ready, and no new connections accepted.
	waitFor(t, "/ready to fail while draining", func() bool {
		code, _ := get(t, client(), "http://"+adm.Addr().String()+"/ready")
		return code == 503
	})
	waitFor(t, "the listener to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	for range n {
		if code := <-results; code != 200 {
			t.Fatalf("an accepted request got %d during drain", code)
		}
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}

func TestAdminEndpoints(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	p := startProxy(t, simpleConfig(up))
	adm, err := admin.Start("127.0.0.1:0", admin.Full, p, p.Metrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close(context.Background())
	base := "http://" + adm.Addr().String()
	get(t, client(), "http://"+addr(t, p, "in")+"/")
	for _, path := range []string{"/live", "/ready"} {
		if code, _ := get(t, client(), base+path); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
	}
	code, body := get(t, client(), base+"/config")
	var cfg config.Bootstrap
	if code != 200 || json.Unmarshal([]byte(body), &cfg) != nil || cfg.Listeners[0].Name != "in" || cfg.Listeners[0].DetectTimeout.D() != patientDetectTimeout {
		t.Fatalf("/config: %d %s", code, body)
	}
	_, metricsText := get(t, client(), base+"/metrics")
	for _, want := range []string{
		`knit_requests_total{classification="failure",code="503",direction="inbound",grpc_status="",route="default",upstream="c"} 1`,
		`knit_request_duration_seconds_bucket{direction="inbound",route="default",upstream="c",le="+Inf"} 1`,
		`knit_tcp_bytes_total`, `knit_retries_total`, `knit_outlier_ejections_total`, `process_resident_memory_bytes`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestAccessLogOneJSONLinePerRequest(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })
	logFile := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, simpleConfig(up)+"accessLog: {enabled: true, path: "+logFile+"}\n")
	for range 3 {
		get(t, client(), "http://"+addr(t, p, "in")+"/path?q=1")
	}
	b, _ := os.ReadFile(logFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %q", b)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e["path"] != "/path" || e["status"] != 200.0 || e["upstream"] != "c" || e["bytes_sent"] != 5.0 || e["endpoint"] != up {
		t.Fatalf("entry %v", e)
	}
}

func TestTraceContextPropagation(t *testing.T) {
	got := make(chan string, 10)
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("Traceparent") })
	p := startProxy(t, simpleConfig(up))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	get(t, client(), "http://"+addr(t, p, "in")+"/", "Traceparent", parent)
	if tp := <-got; tp != parent {
		t.Fatalf("without export the header must pass unchanged, got %q", tp)
	}

	// With span export: the upstream's parent becomes the proxy's span.
	exp := tracetest.NewInMemoryExporter()
	tr := trace.NewWithExporter(exp, config.Tracing{ServiceName: "knit-proxy"})
	p.SetTracer(tr)
	get(t, client(), "http://"+addr(t, p, "in")+"/", "Traceparent", parent)
	tp := <-got
	if !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || tp == parent {
		t.Fatalf("want same trace id with the proxy span as parent, got %q", tp)
	}
	tr.Flush(context.Background())
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "default" || spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("spans %+v", spans)
	}
	if !strings.Contains(tp, spans[0].SpanContext.SpanID().String()) {
		t.Fatalf("upstream parent %q is not the exported span", tp)
	}
}

// otlpCollector is a real OTLP/gRPC trace receiver on loopback: what an
// OpenTelemetry Collector's 4317 receiver is to the proxy.
type otlpCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	got chan *coltracepb.ExportTraceServiceRequest
}

func (c *otlpCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.got <- req
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startOTLPCollector(t *testing.T) (*otlpCollector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &otlpCollector{got: make(chan *coltracepb.ExportTraceServiceRequest, 10)}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return c, ln.Addr().String()
}

func TestOTLPExportToCollector(t *testing.T) {
	collector, endpoint := startOTLPCollector(t)
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {})
	p := startProxy(t, simpleConfig(up)+"tracing: {otlpEndpoint: \""+endpoint+"\", samplingRatio: 0, serviceName: shop.web}\n")
	// Sampling 0 starts no trace of its own, but continues one the caller sampled.
	get(t, client(), "http://"+addr(t, p, "in")+"/")
	get(t, client(), "http://"+addr(t, p, "in")+"/", "Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p.Drain(ctx) // flushes the batch
	var traceIDs []string
	var service string
	for len(traceIDs) == 0 {
		select {
		case req := <-collector.got:
			for _, rs := range req.ResourceSpans {
				for _, kv := range rs.GetResource().GetAttributes() {
					if kv.Key == "service.name" {
						service = kv.GetValue().GetStringValue()
					}
				}
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						traceIDs = append(traceIDs, fmt.Sprintf("%x", sp.TraceId))
					}
				}
			}
		case <-ctx.Done():
			t.Fatal("no OTLP export reached the collector")
		}
	}
	if len(traceIDs) != 1 || traceIDs[0] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("want exactly the caller's sampled trace, got spans of traces %v", traceIDs)
	}
	if service != "shop.web" {
		t.Fatalf("service.name %q, want shop.web", service)
	}
}

// TestDrainDelayServesNewConnectionsAndAsksClientsToLeave: for drain.delay a
// draining proxy fails /ready but still serves the connections a load
// balancer sends it, old and new, each response with "Connection: close";
// once the drain is over the listener is closed.
func TestDrainDelayServesNewConnectionsAndAsksClientsToLeave(t *testing.T) {
	up := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	// A delay far longer than the test: it ends when the drain's context does.
	cfg, err := config.Parse([]byte(simpleConfig(up) + "drain: {delay: 10m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := New(discard(), newMetrics())
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	a := addr(t, p, "in")
	adm, err := admin.Start("127.0.0.1:0", admin.Full, p, p.Metrics.Registry)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close(context.Background())

	// roundTrip sends one GET on c and returns the response's status and whether it said
	// "Connection: close" (net/http moves that header into resp.Close).
	roundTrip := func(c net.Conn, br *bufio.Reader) (int, bool) {
		t.Helper()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Close
	}
	keptAlive, keptAliveR := dialH1(t, a)
	if code, closing := roundTrip(keptAlive, keptAliveR); code != 200 || closing {
		t.Fatalf("before the drain: %d, Connection: close %v", code, closing)
	}
	h2 := dialH2C(t, a)
	if status, goAway := h2Get(t, h2, 1, false); status != "200" || goAway {
		t.Fatalf("HTTP/2 before the drain: %s, GOAWAY %v", status, goAway)
	}

	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan error, 1)
	go func() { drained <- p.Drain(ctx) }()
	waitFor(t, "/ready to fail while draining", func() bool {
		code, _ := get(t, client(), "http://"+adm.Addr().String()+"/ready")
		return code == 503
	})
	if code, closing := roundTrip(keptAlive, keptAliveR); code != 200 || !closing {
		t.Fatalf("a kept-alive connection during the drain delay: %d, Connection: close %v; want 200 and close", code, closing)
	}
	if _, err := keptAliveR.ReadByte(); err != io.EOF {
		t.Fatalf("the proxy closes a kept-alive connection after its close response; read: %v", err)
	}
	fresh, freshR := dialH1(t, a)
	if code, closing := roundTrip(fresh, freshR); code != 200 || !closing {
		t.Fatalf("a new connection during the drain delay: %d, Connection: close %v; want 200 and close", code, closing)
	}
	if status, goAway := h2Get(t, h2, 3, true); status != "200" || !goAway {
		t.Fatalf("HTTP/2 during the drain delay: %s, GOAWAY %v; want 200 and a GOAWAY", status, goAway)
	}

	cancel()
	<-drained
	if c, err := net.DialTimeout("tcp", a, 5*time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after the drain")
	}
}
