package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
)

// buildProxy compiles the real binary so signals and file watching are tested as deployed.
func buildProxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "knit-proxy")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func configFor(upstream string) string {
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
drain: {timeout: 30s}
listeners:
- {name: in, address: "127.0.0.1:0", routeConfig: main}
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [{name: r, clusters: [{name: c}]}]}]
clusters:
- {name: c, endpoints: [{address: "%s"}]}
`, upstream)
}

// startBinary runs knit-proxy and returns its listener address from its JSON log.
func startBinary(t *testing.T, bin, cfgPath string) (*exec.Cmd, string, *logTail) {
	t.Helper()
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--watch-interval", "100ms")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lt := &logTail{done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		defer close(lt.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lt.add(sc.Text())
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "listening" && m["listener"] == "in" {
				addrCh <- m["address"].(string)
			}
		}
	}()
	select {
	case a := <-addrCh:
		return cmd, a, lt
	case <-time.After(60 * time.Second):
		t.Fatalf("proxy did not start: %s", lt)
	}
	return nil, "", nil
}

type logTail struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{} // closed when the process closed its stderr
}

func (l *logTail) add(s string) { l.mu.Lock(); l.lines = append(l.lines, s); l.mu.Unlock() }
func (l *logTail) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}
func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func waitFor(t *testing.T, what string, cond func() bool, logs ...*logTail) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, l := range logs {
				t.Logf("proxy log:\n%s", l)
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSIGTERMUnderLoadCompletesAcceptedRequests(t *testing.T) {
	bin := buildProxy(t)
	var received atomic.Int64
	hold := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		if r.URL.Path == "/slow" {
			<-hold
		}
		w.Write([]byte("ok"))
	}))
	defer up.Close()
	cfgPath := filepath.Join(t.TempDir(), "proxy.yaml")
	os.WriteFile(cfgPath, []byte(configFor(up.Listener.Addr().String())), 0o600)
	cmd, addr, logs := startBinary(t, bin, cfgPath)

	var ok200 atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Steady keep-alive load.
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 60 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := cl.Get("http://" + addr + "/fast")
				if err != nil {
					return // refused after drain began: never accepted
				}
				io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok200.Add(1)
				} else {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	// Slow requests in flight at the moment of SIGTERM.
	const slow = 10
	slowDone := make(chan int, slow)
	for range slow {
		go func() {
			resp, err := (&http.Client{Timeout: 60 * time.Second}).Get("http://" + addr + "/slow")
			if err != nil {
				slowDone <- 0
				return
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			slowDone <- resp.StatusCode
		}()
	}
	waitFor(t, "slow requests and load to reach the upstream", func() bool { return received.Load() > slow+100 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drain to start", func() bool { return logs.has(`"msg":"draining"`) }, logs)
	close(hold)
	for range slow {
		if code := <-slowDone; code != 200 {
			t.Fatalf("in-flight request got %d across SIGTERM", code)
		}
	}
	close(stop)
	wg.Wait()
	// Read the log to its end before Wait, which closes the pipe.
	select {
	case <-logs.done:
	case <-time.After(60 * time.Second):
		t.Fatal("proxy did not exit after drain")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("proxy exit: %v\n%s", err, logs)
	}
	if !logs.has(`"complete":true`) {
		t.Fatalf("drain did not complete cleanly:\n%s", logs)
	}
	// Every request the proxy accepted and forwarded got its 200.
	if got, want := ok200.Load()+slow, received.Load(); got != want {
		t.Fatalf("upstream served %d requests but clients got %d responses", want, got)
	}
}

func TestConfigFileChangeIsHotReloaded(t *testing.T) {
	bin := buildProxy(t)
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("a")) }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("b")) }))
	defer b.Close()
	cfgPath := filepath.Join(t.TempDir(), "proxy.yaml")
	os.WriteFile(cfgPath, []byte(configFor(a.Listener.Addr().String())), 0o600)
	cmd, addr, logs := startBinary(t, bin, cfgPath)
	body := func() string {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		x, _ := io.ReadAll(resp.Body)
		return string(x)
	}
	if got := body(); got != "a" {
		t.Fatalf("got %q", got)
	}
	// A broken file is refused and the last good config keeps serving.
	os.WriteFile(cfgPath, []byte("listeners: [{name: in, address: nope}]"), 0o600)
	waitFor(t, "the bad reload to be logged", func() bool {
		if cmd.ProcessState != nil || logs.has("panic") {
			t.Fatalf("proxy died:\n%s", logs)
		}
		return logs.has("config reload failed")
	}, logs)
	if !logs.has("listeners[0].address") {
		t.Fatalf("reload error does not name the field:\n%s", logs)
	}
	if got := body(); got != "a" {
		t.Fatalf("bad reload broke serving: %q", got)
	}
	os.WriteFile(cfgPath, []byte(configFor(b.Listener.Addr().String())), 0o600)
	waitFor(t, "traffic to move to b", func() bool { return body() == "b" })
}

// On SIGTERM a proxy with a control plane leaves it before it drains: a draining proxy refuses
// new configuration, so a push during the drain would otherwise be a refusal (NACK) shown on
// the Mesh as a data plane that rejects its config.
func TestSIGTERMLeavesTheControlPlaneBeforeDraining(t *testing.T) {
	m := metrics.New()
	p := dataplane.New(logr.Discard(), m)
	if err := p.Apply(context.Background(), &config.Bootstrap{}); err != nil {
		t.Fatal(err)
	}
	if !p.Ready() {
		t.Fatal("the proxy is not Ready with a config applied")
	}
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGTERM
	left, readyWhenLeaving := 0, false
	err := serveSignals(logr.Discard(), p, m, nil, nil, 0, sigs, func() { left++; readyWhenLeaving = p.Ready() })
	if err != nil {
		t.Fatal(err)
	}
	if left != 1 || !readyWhenLeaving {
		t.Fatalf("left the control plane %d times, the proxy Ready then: %v; want once, before draining", left, readyWhenLeaving)
	}
	if p.Ready() {
		t.Fatal("the proxy is still Ready after its drain")
	}
}
