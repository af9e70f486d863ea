package appprobe

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return port(t, ln.Addr().String())
}

func probe(t *testing.T, p *Prober, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec.Code, rec.Body.String()
}

// The value the injector writes for the probes golden test
// (webhooks/injection/testdata/probes.patch.golden.json), with real ports.
func TestProbesFromInjectorJSON(t *testing.T) {
	var gotHeader, gotHost string
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHeader, gotHost = r.Header.Get("X-Probe"), r.Host
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(200)
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			w.WriteHeader(500)
		}
	}))
	defer app.Close()
	appPort := port(t, app.Listener.Addr().String())

	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_NOT_SERVING)
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(gln)
	defer gs.Stop()
	grpcPort := port(t, gln.Addr().String())
	closed := freePort(t)

	env := strings.NewReplacer("APP", strconv.Itoa(appPort), "GRPC", strconv.Itoa(grpcPort), "CLOSED", strconv.Itoa(closed)).Replace(`{
		"/app-health/app/liveness":{"tcpSocket":{"port":APP}},
		"/app-health/app/readiness":{"httpGet":{"path":"/healthz","port":APP,"httpHeaders":[{"name":"X-Probe","value":"1"},{"name":"Host","value":"app.local"}]}},
		"/app-health/app/startup":{"grpc":{"port":GRPC,"service":null}},
		"/app-health/web/readiness":{"httpGet":{"path":"/broken","port":"APP"}},
		"/app-health/web/liveness":{"httpGet":{"path":"/moved","port":APP}},
		"/app-health/web/startup":{"tcpSocket":{"port":CLOSED}},
		"/app-health/orders/readiness":{"grpc":{"port":GRPC,"service":"orders"}},
		"/app-health/down/readiness":{"httpGet":{"path":"/","port":CLOSED}}
	}`)
	probes, err := Parse(env)
	if err != nil {
		t.Fatal(err)
	}
	p := New(probes)
	p.Timeout = 2 * time.Second
	for path, want := range map[string]int{
		"/app-health/app/liveness":     200,
		"/app-health/app/readiness":    200,
		"/app-health/app/startup":      200,
		"/app-health/web/readiness":    503, // 500 from the app
		"/app-health/web/liveness":     200, // 3xx counts as success, not followed
		"/app-health/web/startup":      503, // nothing listens
		"/app-health/orders/readiness": 503, // NOT_SERVING
		"/app-health/down/readiness":   503,
		"/app-health/nobody/readiness": 404,
	} {
		if code, body := probe(t, p, path); code != want {
			t.Errorf("%s: %d %q, want %d", path, code, body, want)
		}
	}
	probe(t, p, "/app-health/app/readiness")
	if gotHeader != "1" || gotHost != "app.local" {
		t.Errorf("probe headers: X-Probe=%q Host=%q", gotHeader, gotHost)
	}
}

func TestProbeTimeout(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close() // accepts (backlog) but never answers
	probes, err := Parse(`{"/app-health/a/readiness":{"httpGet":{"path":"/","port":` + strconv.Itoa(port(t, ln.Addr().String())) + `}}}`)
	if err != nil {
		t.Fatal(err)
	}
	p := New(probes)
	p.Timeout = 200 * time.Millisecond
	start := time.Now()
	if code, _ := probe(t, p, "/app-health/a/readiness"); code != 503 {
		t.Fatalf("code %d", code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestParseErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"/app-health/a/readiness":{"httpGet":{"port":"http"}}}`:            `port "http" is named`,
		`{"/app-health/a/readiness":{"tcpSocket":{"port":0}}}`:               `port 0 is not between 1 and 65535`,
		`{"/app-health/a/readiness":{}}`:                                     `exactly one of`,
		`{"/elsewhere":{"tcpSocket":{"port":80}}}`:                           `does not start with /app-health/`,
		`{"/app-health/a/readiness":{"httpGet":{"port":80,"scheme":"FTP"}}}`: `not HTTP or HTTPS`,
		`not json`: `KNIT_APP_PROBES`,
		`{"/app-health/a/readiness":{"tcpSocket":{"port":80},"grpc":{"port":81}}}`: `exactly one of`,
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	if m, err := Parse(""); err != nil || len(m) != 0 {
		t.Errorf("empty: %v %v", m, err)
	}
}
