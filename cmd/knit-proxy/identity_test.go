package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/proxy/identity/identitytest"
	"github.com/knit-mesh/knit/proxy/xds/xdstest"
)

// The real binary with the injector's environment reports Ready only once it holds a
// certificate for its own identity, and exports its expiry.
func TestSidecarIsReadyOnlyWithItsCertificate(t *testing.T) {
	bin := buildProxy(t)
	ca := identitytest.Start(t, time.Hour, xdstest.Register)
	other := "spiffe://cluster.local/ns/shop/sa/admin"
	ca.IssueFor.Store(&other) // a wrong answer until the test says otherwise

	dir := t.TempDir()
	token, bundle := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(token, []byte(identitytest.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, []byte(identitytest.PEM(ca.Root)), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freePort(t)
	cmd := exec.Command(bin, "run", "--sidecar", "--admin-port="+admin, "--local-admin-port="+freePort(t),
		"--inbound-port="+freePort(t), "--outbound-port="+freePort(t), "--proxy-uid="+strconv.Itoa(os.Geteuid()))
	cmd.Env = append(os.Environ(), "POD_NAME=web-0", "POD_NAMESPACE=shop", "KNIT_ACCESS_LOG=Off",
		"KNIT_IDENTITY=spiffe://cluster.local/ns/shop/sa/default", "KNIT_CONTROL_PLANE="+ca.Addr,
		"KNIT_IDENTITY_ADDRESS="+ca.Addr, "KNIT_TOKEN_FILE="+token, "KNIT_TRUST_BUNDLE="+bundle)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://127.0.0.1:" + admin + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitFor := func(what string, cond func() bool) {
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never %s; log:\n%s", what, stderr.String())
			}
		}
	}
	waitFor("live", func() bool { code, _ := get("/live"); return code == 200 })
	waitFor("a refused answer", func() bool { return strings.Contains(stderr.String(), "not spiffe://cluster.local/ns/shop/sa/default") })
	if code, _ := get("/ready"); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready = %d without a certificate for its identity", code)
	}

	ca.IssueFor.Store(nil)
	waitFor("ready", func() bool { code, _ := get("/ready"); return code == 200 })
	_, metrics := get("/metrics")
	if !strings.Contains(metrics, "knit_proxy_certificate_expiry_timestamp_seconds ") {
		t.Fatalf("/metrics lacks the certificate expiry:\n%s", metrics)
	}
}

func TestMTLSModeNeedsAnIdentityForStrict(t *testing.T) {
	env := func(mode string) func(string) string {
		return func(k string) string { return map[string]string{"KNIT_MTLS_MODE": mode}[k] }
	}
	if in, err := inboundMTLS(logr.Discard(), env("PERMISSIVE"), nil, prometheus.NewRegistry()); err != nil || in != nil {
		t.Fatalf("PERMISSIVE without identity: %v %v", in, err)
	}
	if _, err := inboundMTLS(logr.Discard(), env("STRICT"), nil, prometheus.NewRegistry()); err == nil ||
		!strings.Contains(err.Error(), "STRICT but the sidecar has no control plane") {
		t.Fatalf("STRICT without identity: %v", err)
	}
	if _, err := inboundMTLS(logr.Discard(), env("strict"), nil, prometheus.NewRegistry()); err == nil {
		t.Fatal("a mode that is not STRICT or PERMISSIVE was accepted")
	}
}
