package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/xds"
)

func TestXDSOptionsFromTheInjectorsEnvironment(t *testing.T) {
	env := map[string]string{"KNIT_CONTROL_PLANE": "knit-controlplane-r1.knit-system.svc:15010", "KNIT_TRUST_BUNDLE": "/var/run/knit/trust/ca.crt",
		"KNIT_TOKEN_FILE": "/var/run/knit/token/token", "POD_NAMESPACE": "shop", "POD_NAME": "web-0", "POD_IP": "10.1.0.7", "KNIT_REVISION": "r1"}
	o, err := xdsOptions(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.NodeID != "shop/web-0" || o.ServerName != "knit-controlplane-r1.knit-system.svc" || o.Metadata["POD_IP"] != "10.1.0.7" || o.Metadata["REVISION"] != "r1" {
		t.Fatalf("%+v", o)
	}
	for _, missing := range []string{"KNIT_TOKEN_FILE", "KNIT_TRUST_BUNDLE", "POD_NAME"} {
		saved := env[missing]
		delete(env, missing)
		if _, err := xdsOptions(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: %v", missing, err)
		}
		env[missing] = saved
	}
	env["KNIT_CONTROL_PLANE"] = "no-port"
	if _, err := xdsOptions(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "KNIT_CONTROL_PLANE") {
		t.Errorf("bad address: %v", err)
	}
}

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A sidecar with a control plane it cannot reach serves its listeners but
// is not Ready: it has no configuration from the control plane yet.
func TestSidecarWithAControlPlaneIsNotReadyUntilConfigured(t *testing.T) {
	bin := buildProxy(t)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	bundle, token := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "token")
	os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(token, []byte("tok"), 0o600)

	admin := freePort(t)
	cmd := exec.Command(bin, "run", "--sidecar", "--admin-port="+admin, "--local-admin-port="+freePort(t),
		"--inbound-port="+freePort(t), "--outbound-port="+freePort(t), "--proxy-uid="+strconv.Itoa(os.Geteuid()))
	cmd.Env = append(os.Environ(), "POD_NAME=web-0", "POD_NAMESPACE=shop", "POD_IP=127.0.0.1",
		"KNIT_CONTROL_PLANE=127.0.0.1:"+freePort(t), "KNIT_TRUST_BUNDLE="+bundle, "KNIT_TOKEN_FILE="+token)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), "control plane stream ended") {
		if time.Now().After(deadline) {
			t.Fatalf("no connection attempt logged:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	status := func(path string) int {
		resp, err := http.Get("http://127.0.0.1:" + admin + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if live, ready := status("/live"), status("/ready"); live != 200 || ready != 503 {
		t.Fatalf("/live %d, /ready %d; want 200 and 503 before the first configuration\n%s", live, ready, stderr.String())
	}
}

func TestUnconfiguredSidecarSaysWhyAtTheDeadline(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		lines = append(lines, args)
		mu.Unlock()
	}, funcr.Options{})
	c, err := xds.New(xds.Options{Address: "127.0.0.1:1", NodeID: "shop/web-0"}, &config.Bootstrap{}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go warnIfUnconfigured(ctx, log, c, "127.0.0.1:1", time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		all := strings.Join(lines, "\n")
		mu.Unlock()
		if strings.Contains(all, "no configuration from the control plane at 127.0.0.1:1") && strings.Contains(all, "stays not Ready") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no clear log line:\n%s", all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
