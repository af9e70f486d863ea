package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knit-mesh/knit/proxy/netnstest"
)

// inNs wraps a test namespace with an HTTP client whose connections are made inside it.
type inNs struct{ *netnstest.Netns }

func (n inNs) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = n.Do(0, func() error {
				c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
}

func newNs(t *testing.T) inNs {
	t.Helper()
	n, err := netnstest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return inNs{n}
}

func body(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMeshedPodInNetworkNamespace runs the real binary as the injector does:
// `knit-proxy init` (twice) as root in a "pod" network namespace, then
// `knit-proxy run --sidecar` as UID 1337 there; a client in another namespace
// reaches the app through the inbound capture, the app reaches a server in
// the client namespace through the outbound capture, and the kubelet-style
// probe of the app goes through the admin port.
func TestMeshedPodInNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates network namespaces, writes nftables rules, runs the proxy as UID 1337)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	bin := buildProxy(t)
	os.Chmod(filepath.Dir(bin), 0o755) // UID 1337 must reach the binary
	os.Chmod(filepath.Dir(filepath.Dir(bin)), 0o755)
	// Anonymous namespaces (nothing in /run/netns), joined by a veth pair.
	pod, cli := newNs(t), newNs(t)
	if err := netnstest.Veth(pod.Netns, cli.Netns, "epod", "10.214.0.2/24", "ecli", "10.214.0.1/24"); err != nil {
		t.Fatal(err)
	}

	// init, twice, with the injector's arguments.
	for i := range 2 {
		var out []byte
		err := pod.Do(0, func() (err error) {
			out, err = exec.Command(bin, "init", "--proxy-uid=1337", "--inbound-port=15006", "--outbound-port=15001",
				"--exclude-inbound-ports=15020").CombinedOutput()
			return err
		})
		if err != nil {
			t.Fatalf("init #%d: %v\n%s", i+1, err, out)
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		rs, err := pod.Run("nft", "list", "ruleset")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(rs, "table ip knit") != 1 || strings.Count(rs, "table ip6 knit") != 1 {
			t.Fatalf("after two inits:\n%s", rs)
		}
	}

	// The app in the pod, a server outside.
	serve := func(ns inNs, addr string, h http.HandlerFunc) {
		var ln net.Listener
		if err := ns.Do(0, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	serve(pod, ":8080", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "app %s", r.Host) })
	serve(cli, "10.214.0.1:9090", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "remote %s", r.Host) })
	// A remote server on the same port number as the sidecar's outbound listener.
	serve(cli, "10.214.0.1:15001", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "remote %s", r.Host) })

	// The sidecar, as UID 1337, started from a thread inside the pod namespace (the child inherits it).
	cmd := exec.Command(bin, "run", "--sidecar", "--log-level=debug", "--admin-port=15020", "--inbound-port=15006", "--outbound-port=15001")
	cmd.Env = append(os.Environ(), "POD_NAME=web-0", "POD_NAMESPACE=shop", "POD_IP=10.214.0.2", "KNIT_ACCESS_LOG=Off",
		`KNIT_APP_PROBES={"/app-health/app/readiness":{"httpGet":{"path":"/","port":8080}}}`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1337, Gid: 1337}}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := pod.Do(0, cmd.Start); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	kubelet := cli.client() // reaches the admin port from outside, as the kubelet does
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := kubelet.Get("http://10.214.0.2:15020/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar never ready: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, b := body(t, kubelet, "http://10.214.0.2:15020/app-health/app/readiness"); code != 200 {
		t.Fatalf("app probe: %d %s", code, b)
	}
	// Inbound: client → pod:8080, captured to :15006, forwarded to the app.
	if code, b := body(t, cli.client(), "http://10.214.0.2:8080/x"); code != 200 || b != "app 10.214.0.2:8080" {
		t.Fatalf("inbound: %d %q\n%s", code, b, logs.String())
	}
	// Outbound: app → remote:9090, captured to :15001, forwarded to the remote.
	if code, b := body(t, pod.client(), "http://10.214.0.1:9090/y"); code != 200 || b != "remote 10.214.0.1:9090" {
		t.Fatalf("outbound: %d %q\n%s", code, b, logs.String())
	}
	// A remote port that equals a listener port is not a loop.
	if code, b := body(t, pod.client(), "http://10.214.0.1:15001/z"); code != 200 || b != "remote 10.214.0.1:15001" {
		t.Fatalf("outbound to a remote :15001: %d %q\n%s", code, b, logs.String())
	}
	// The pod network reaches probes and metrics only; /config and pprof are on loopback.
	for _, path := range []string{"/config", "/debug/pprof/"} {
		if code, _ := body(t, kubelet, "http://10.214.0.2:15020"+path); code != 404 {
			t.Errorf("%s from the pod network: %d, want 404", path, code)
		}
		if code, _ := body(t, pod.client(), "http://127.0.0.1:15000"+path); code != 200 {
			t.Errorf("%s on the pod's loopback: %d, want 200", path, code)
		}
	}
	// (captured inbound and forwarded to POD_IP:15000, where nothing listens: 502)
	if resp, err := kubelet.Get("http://10.214.0.2:15000/config"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("the full admin port answered the pod network")
		}
	}
	_, metrics := body(t, kubelet, "http://10.214.0.2:15020/metrics")
	for _, want := range []string{
		`knit_requests_total{classification="success",code="200",direction="inbound",grpc_status="",route="inbound",upstream="inbound|8080"} 1`,
		`knit_requests_total{classification="success",code="200",direction="outbound",grpc_status="",route="outbound",upstream="outbound|9090"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s\n%s", want, grep(metrics, "knit_requests_total"))
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sidecar exit: %v\n%s", err, logs.String())
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
