package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSidecarConfigFromFlagsAndEnv(t *testing.T) {
	env := map[string]string{"KNIT_ACCESS_LOG": "JSON",
		"KNIT_APP_PROBES": `{"/app-health/app/liveness":{"tcpSocket":{"port":8080}},"/app-health/app/readiness":{"httpGet":{"path":"/healthz","port":8080}},"/app-health/app/startup":{"grpc":{"port":9090,"service":null}}}`}
	cfg, probes, _, err := sidecarConfig(sidecarFlags{15020, 15000, 15006, 15001, 1337}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.ProbeAddress != ":15020" || cfg.Admin.Address != "127.0.0.1:15000" || len(cfg.Listeners) != 2 || cfg.Listeners[0].Address != ":15006" ||
		!cfg.Listeners[0].OriginalDestination || cfg.Listeners[1].Direction != "outbound" || cfg.Listeners[1].Address != ":15001" ||
		!cfg.AccessLog.Enabled || len(probes) != 3 {
		t.Fatalf("%+v %v", cfg, probes)
	}
	cfg, _, _, err = sidecarConfig(sidecarFlags{15020, 15000, 15006, 15001, 1337}, func(k string) string {
		return map[string]string{"KNIT_ACCESS_LOG": "Text"}[k]
	})
	if err != nil || !cfg.AccessLog.Enabled || cfg.AccessLog.Format != "text" {
		t.Fatalf("KNIT_ACCESS_LOG=Text: %v %+v", err, cfg.AccessLog)
	}
	for _, tc := range []struct {
		f    sidecarFlags
		env  map[string]string
		want string
	}{
		{sidecarFlags{0, 15000, 15006, 15001, 1337}, nil, "--admin-port: 0 is not a port"},
		{sidecarFlags{15006, 15000, 15006, 15001, 1337}, nil, "must differ"},
		{sidecarFlags{15020, 15020, 15006, 15001, 1337}, nil, "must differ"},
		{sidecarFlags{15020, 15000, 15006, 15001, 1337}, map[string]string{"KNIT_ACCESS_LOG": "yaml"}, "KNIT_ACCESS_LOG"},
		{sidecarFlags{15020, 15000, 15006, 15001, 1337}, map[string]string{"KNIT_APP_PROBES": `{"/x":{}}`}, "KNIT_APP_PROBES"},
	} {
		_, _, _, err := sidecarConfig(tc.f, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v %v: %v, want %q", tc.f, tc.env, err, tc.want)
		}
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// The real binary with the injector's arguments and environment: ready,
// answers the app's probes, serves metrics, drains on SIGTERM.
func TestSidecarBinary(t *testing.T) {
	bin := buildProxy(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(500)
		}
	}))
	defer app.Close()
	appPort := strconv.Itoa(app.Listener.Addr().(*net.TCPAddr).Port)
	admin, local, in, out := freePort(t), freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(bin, "run", "--sidecar", "--log-level=info", "--admin-port="+admin, "--local-admin-port="+local,
		"--inbound-port="+in, "--outbound-port="+out, "--proxy-uid="+strconv.Itoa(os.Geteuid()))
	cmd.Env = append(os.Environ(), "POD_NAME=web-0", "POD_NAMESPACE=shop", "POD_IP=127.0.0.1", "KNIT_ACCESS_LOG=Off",
		"KNIT_IDENTITY=spiffe://cluster.local/ns/shop/sa/default", "KNIT_REVISION=default-v0-1-0",
		`KNIT_APP_PROBES={"/app-health/app/readiness":{"httpGet":{"path":"/healthz","port":`+appPort+`}},"/app-health/app/liveness":{"httpGet":{"path":"/bad","port":`+appPort+`}}}`)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := "http://127.0.0.1:" + admin
	getFrom := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	get := func(path string) int { return getFrom(base + path) }
	deadline := time.Now().Add(10 * time.Second)
	for get("/ready") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("never ready; log:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for path, want := range map[string]int{"/live": 200, "/metrics": 200, "/app-health/app/readiness": 200,
		"/app-health/app/liveness": 503, "/app-health/other/readiness": 404} {
		if got := get(path); got != want {
			t.Errorf("%s: %d, want %d", path, got, want)
		}
	}
	// The probe port listens on every address (127.0.0.2 stands for the pod
	// IP) and serves probes and metrics only; the full admin port is on
	// 127.0.0.1 alone.
	for url, want := range map[string]int{
		"http://127.0.0.2:" + admin + "/ready": 200, "http://127.0.0.2:" + admin + "/metrics": 200,
		"http://127.0.0.2:" + admin + "/config": 404, "http://127.0.0.2:" + admin + "/debug/pprof/": 404,
		base + "/config": 404, base + "/debug/pprof/": 404,
		"http://127.0.0.1:" + local + "/config": 200, "http://127.0.0.1:" + local + "/debug/pprof/": 200,
		"http://127.0.0.1:" + local + "/metrics": 200,
		"http://127.0.0.2:" + local + "/config":  0, // not listening there: connection refused
	} {
		if got := getFrom(url); got != want {
			t.Errorf("%s: %d, want %d", url, got, want)
		}
	}
	// Both listeners are bound (a direct connection is closed: it has no original destination to go to).
	for _, p := range []string{in, out} {
		c, err := net.Dial("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("listener %s: %v", p, err)
		}
		c.Close()
	}
	// The preStop hook (the pod is terminating; the app has just been signalled): the proxy is
	// no longer ready and keeps both listeners open. Only what runs in the pod can ask for it.
	if resp, err := http.Post("http://127.0.0.2:"+admin+"/drain", "text/plain", nil); err != nil || resp.StatusCode == 200 {
		t.Fatalf("POST /drain on the probe port: %v %v; want it refused there", resp, err)
	}
	if get("/ready") != 200 {
		t.Fatal("a refused /drain changed readiness")
	}
	if out, err := exec.Command(bin, "drain", "--local-admin-port="+local).CombinedOutput(); err != nil || !strings.Contains(string(out), "retiring") {
		t.Fatalf("knit-proxy drain: %v %s", err, out)
	}
	if code := get("/ready"); code != 503 {
		t.Fatalf("/ready after the preStop hook: %d, want 503", code)
	}
	for _, p := range []string{in, out} {
		c, err := net.Dial("tcp", "127.0.0.1:"+p)
		if err != nil {
			t.Fatalf("listener %s after the preStop hook: %v; want it still accepting", p, err)
		}
		c.Close()
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "sidecar mode") {
		t.Errorf("log lacks the sidecar line:\n%s", stderr.String())
	}
}

// The capture rules exempt one UID; running as any other would send the
// proxy's own connections back to itself, so the sidecar refuses to start.
func TestSidecarRefusesToRunAsAnotherUID(t *testing.T) {
	bin := buildProxy(t)
	cmd := exec.Command(bin, "run", "--sidecar", "--admin-port="+freePort(t), "--local-admin-port="+freePort(t),
		"--inbound-port="+freePort(t), "--outbound-port="+freePort(t), "--proxy-uid="+strconv.Itoa(os.Geteuid()+1))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "capture rules exempt only UID "+strconv.Itoa(os.Geteuid()+1)) {
		t.Fatalf("exit %v, output:\n%s", err, out)
	}
}

func TestSidecarObservabilityFromEnv(t *testing.T) {
	flags := sidecarFlags{15020, 15000, 15006, 15001, 1337}
	env := map[string]string{"KNIT_TRACING_ENDPOINT": "otel-collector.observability:4317",
		"KNIT_TRACING_SAMPLING_PERCENT": "0", "KNIT_TRACING_SERVICE_NAME": "web.shop", "KNIT_METRICS": "off"}
	cfg, _, _, err := sidecarConfig(flags, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Tracing
	if tr.OTLPEndpoint != "otel-collector.observability:4317" || tr.SamplingRatio == nil || *tr.SamplingRatio != 0 ||
		tr.ServiceName != "web.shop" || !cfg.Admin.NoMetrics {
		t.Fatalf("tracing %+v, noMetrics %v", tr, cfg.Admin.NoMetrics)
	}
	cfg, _, _, err = sidecarConfig(flags, func(string) string { return "" })
	if err != nil || cfg.Tracing.OTLPEndpoint != "" || cfg.Admin.NoMetrics {
		t.Fatalf("without the variables: %v, tracing %+v, noMetrics %v", err, cfg.Tracing, cfg.Admin.NoMetrics)
	}
	for _, bad := range []map[string]string{
		{"KNIT_METRICS": "false"},
		{"KNIT_TRACING_ENDPOINT": "collector:4317", "KNIT_TRACING_SAMPLING_PERCENT": "101"},
		{"KNIT_TRACING_ENDPOINT": "collector:4317"},
		{"KNIT_TRACING_ENDPOINT": "http://collector:4317", "KNIT_TRACING_SAMPLING_PERCENT": "1"},
	} {
		if _, _, _, err := sidecarConfig(flags, func(k string) string { return bad[k] }); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}

// With metrics off (observability.metrics.enabled: false) neither admin port serves
// /metrics; probes still answer.
func TestSidecarBinaryWithoutMetrics(t *testing.T) {
	bin := buildProxy(t)
	admin, local, in, out := freePort(t), freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(bin, "run", "--sidecar", "--admin-port="+admin, "--local-admin-port="+local,
		"--inbound-port="+in, "--outbound-port="+out, "--proxy-uid="+strconv.Itoa(os.Geteuid()))
	cmd.Env = append(os.Environ(), "POD_NAME=web-0", "POD_NAMESPACE=shop", "POD_IP=127.0.0.1", "KNIT_METRICS=off",
		"KNIT_IDENTITY=spiffe://cluster.local/ns/shop/sa/default", "KNIT_REVISION=default-v0-1-0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	status := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for deadline := time.Now().Add(10 * time.Second); status("http://127.0.0.1:"+admin+"/ready") != 200; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never ready; log:\n%s", stderr.String())
		}
	}
	for url, want := range map[string]int{
		"http://127.0.0.1:" + admin + "/metrics": 404, "http://127.0.0.1:" + local + "/metrics": 404,
		"http://127.0.0.1:" + admin + "/live": 200, "http://127.0.0.1:" + local + "/config": 200,
	} {
		if got := status(url); got != want {
			t.Errorf("%s: %d, want %d", url, got, want)
		}
	}
}

// The preStop hook fails, with a message, when no proxy answers; bad flags are refused.
func TestDrainCommandReportsAProxyThatDoesNotAnswer(t *testing.T) {
	port := freePort(t) // nothing listens there any more
	var stdout, stderr strings.Builder
	if code := runDrain([]string{"--local-admin-port=" + port, "--timeout=5s"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "knit-proxy drain:") {
		t.Fatalf("exit %d, stderr %q; want 1 and the error", code, stderr.String())
	}
	if code := runDrain([]string{"--local-admin-port=0"}, &stdout, &stderr); code != 2 {
		t.Fatalf("port 0: exit %d, want 2", code)
	}
}
