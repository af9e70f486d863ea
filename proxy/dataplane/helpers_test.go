package dataplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
)

// patientDetectTimeout replaces the default protocol detection timeout (500 ms) of the tests'
// listeners: a test client starved of CPU (make test runs at nice 19 beside the cluster suites)
// may send its first bytes later than that, and its connection is then taken for opaque TCP and
// closed (the client sees EOF). Tests of detection itself set their timeout in the YAML.
const patientDetectTimeout = 5 * time.Second

func patientDetection(cfg *config.Bootstrap) {
	for i := range cfg.Listeners {
		if l := &cfg.Listeners[i]; l.DetectTimeout.D() == config.DefaultDetectTimeout {
			l.DetectTimeout = config.Duration(patientDetectTimeout)
		}
	}
}

// startProxy applies a YAML config with real listeners on 127.0.0.1:0.
func startProxy(t testing.TB, yaml string) *Proxy {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	patientDetection(cfg)
	p := New(logr.Discard(), metrics.New())
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	})
	return p
}

func apply(t *testing.T, p *Proxy, yaml string) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	patientDetection(cfg)
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func addr(t *testing.T, p *Proxy, listener string) string {
	t.Helper()
	a := p.ListenerAddr(listener)
	if a == nil {
		t.Fatalf("no listener %s", listener)
	}
	return a.String()
}

// upstream is a real HTTP/1.1 server on loopback.
func httpUpstream(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// h2cUpstream is a real HTTP/2 prior-knowledge server on loopback.
func h2cUpstream(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(true)
	s.Config.Protocols = &p
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

// scrape returns the admin-free text exposition of the proxy's registry.
func scrape(t *testing.T, p *Proxy) string {
	t.Helper()
	mfs, err := p.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(mf.GetName())
			b.WriteString("{")
			for _, l := range m.GetLabel() {
				b.WriteString(l.GetName() + "=\"" + l.GetValue() + "\",")
			}
			b.WriteString("} ")
			switch {
			case m.Counter != nil:
				b.WriteString(big.NewFloat(m.Counter.GetValue()).String())
			case m.Histogram != nil:
				b.WriteString("count=" + big.NewFloat(float64(m.Histogram.GetSampleCount())).String())
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// metricValue finds the first series whose line contains all parts.
func metricValue(t *testing.T, p *Proxy, parts ...string) string {
	t.Helper()
	for _, line := range strings.Split(scrape(t, p), "\n") {
		ok := true
		for _, s := range parts {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			return line[strings.LastIndex(line, " ")+1:]
		}
	}
	return ""
}

// writeCert writes a fresh self-signed certificate for 127.0.0.1 and returns
// the paths; calling it again on the same dir replaces the files.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Write to temp files and rename, as Kubernetes secret updates do.
	writeAtomic(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	writeAtomic(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	return certFile, keyFile, der
}

func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond (an event we cannot subscribe to) with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func discard() logr.Logger { return logr.Discard() }

func newMetrics() *metrics.Metrics { return metrics.New() }

func configParse(t *testing.T, yaml string) (*config.Bootstrap, error) {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return c, nil
}
