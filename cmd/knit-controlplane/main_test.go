/*
Copyright 2026 The knit Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/webhooks/injection"
)

func writeCert(t *testing.T, dir string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "knit-controlplane"},
		NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// get polls until the health server answers.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReadinessFollowsTheServingCertificate(t *testing.T) {
	for name, tc := range map[string]struct {
		notAfter time.Time
		want     int
	}{
		"valid":   {time.Now().Add(24 * time.Hour), http.StatusOK},
		"expired": {time.Now().Add(-time.Hour), http.StatusServiceUnavailable},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeCert(t, dir, tc.notAfter)
			addr := freeAddr(t)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- run(ctx, logr.Discard(), testOptions(dir, addr)) }()

			// The health port answers before the webhook server has started; readiness says so
			// until then, which is not what this test asks about.
			code, body := get(t, fmt.Sprintf("http://%s/readyz", addr))
			for deadline := time.Now().Add(10 * time.Second); strings.Contains(body, "has not been started yet") && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
				code, body = get(t, fmt.Sprintf("http://%s/readyz", addr))
			}
			if code != tc.want {
				t.Errorf("/readyz = %d %q, want %d", code, body, tc.want)
			}
			if code, _ := get(t, fmt.Sprintf("http://%s/healthz", addr)); code != http.StatusOK {
				t.Errorf("/healthz = %d, want 200", code)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}

func TestRunRefusesMissingCertificate(t *testing.T) {
	err := run(context.Background(), logr.Discard(), testOptions(t.TempDir(), freeAddr(t)))
	if err == nil {
		t.Fatal("run started without a serving certificate")
	}
}

func testOptions(dir, healthAddr string) options {
	_, port, _ := net.SplitHostPort(freeAddrNoT())
	p, _ := strconv.Atoi(port)
	return options{revision: "default-v0-1-0", tlsDir: dir, healthAddr: healthAddr, webhookHost: "127.0.0.1", webhookPort: p,
		proxyResources: "{}", inject: injection.Config{ProxyImage: "proxy:1"}, namespaces: noAPIServer{}}
}

// noAPIServer stands in for the namespace cache where these tests run without an API server;
// they check health and readiness, not admission.
type noAPIServer struct{}

func (noAPIServer) Namespace(context.Context, string) (injection.Namespace, error) {
	return injection.Namespace{}, errors.New("no API server in this test")
}

func freeAddrNoT() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestHeapLimitIsNinetyPercentOfTheContainersUnlessGOMEMLIMITIsSet(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	if limit, err := setMemoryLimit("", "1000"); err != nil || limit != 900 || debug.SetMemoryLimit(-1) != 900 {
		t.Errorf("container limit 1000: soft limit %d (runtime %d), %v", limit, debug.SetMemoryLimit(-1), err)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	for _, c := range []struct{ gomemlimit, container string }{{"500MiB", "1000"}, {"", ""}} {
		if limit, err := setMemoryLimit(c.gomemlimit, c.container); err != nil || limit != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
			t.Errorf("GOMEMLIMIT=%q, container %q: soft limit %d, %v", c.gomemlimit, c.container, limit, err)
		}
	}
	if _, err := setMemoryLimit("", "1Gi"); err == nil || !strings.Contains(err.Error(), "KNIT_MEMORY_LIMIT") {
		t.Errorf("a limit that is not bytes: %v", err)
	}
}

// stoppingServer is an xDS server whose stop takes until the test lets it finish (as the real
// one's does while it removes its proxy report from the MeshRevision).
type stoppingServer struct {
	stopping, release chan struct{}
	stopped           atomic.Bool
}

func (s *stoppingServer) Start(ctx context.Context) error {
	<-ctx.Done()
	close(s.stopping)
	<-s.release
	s.stopped.Store(true)
	return nil
}

func TestRunReturnsOnlyOnceTheXDSServerStopped(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, time.Now().Add(24*time.Hour))
	addr := freeAddr(t)
	xds := &stoppingServer{stopping: make(chan struct{}), release: make(chan struct{})}
	o := testOptions(dir, addr)
	o.discovery = func(*tls.Config, prometheus.Registerer) (runnable, error) { return xds, nil }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, logr.Discard(), o) }()
	get(t, fmt.Sprintf("http://%s/healthz", addr)) // serving

	cancel()
	<-xds.stopping
	// While the xDS server stops, the process must not exit: run returning ends it. (A
	// bounded wait for something that must not happen; run returned at once before the fix.)
	select {
	case err := <-done:
		t.Fatalf("run returned (%v) while the xDS server was still stopping: its proxy report would stay behind", err)
	case <-time.After(time.Second):
	}
	close(xds.release)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !xds.stopped.Load() {
		t.Fatal("run returned before the xDS server stopped")
	}
}
