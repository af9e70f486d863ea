package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/knit-mesh/knit/proxy/identity/identitytest"
)

const testID = "spiffe://cluster.local/ns/shop/sa/cart"

func startCA(t *testing.T, lifetime time.Duration, renewBefore string) *identitytest.CA {
	ca := identitytest.Start(t, lifetime)
	ca.RenewBefore = renewBefore
	return ca
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// As a ConfigMap volume does: a new file renamed over the old one.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newManager(t *testing.T, ca *identitytest.CA, bundle string) (*Manager, *prometheus.Registry) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "token"), identitytest.Token+"\n")
	writeFile(t, filepath.Join(dir, "ca.crt"), bundle)
	reg := prometheus.NewRegistry()
	m, err := New(Config{Address: ca.Addr, ID: testID, TokenFile: filepath.Join(dir, "token"), TrustBundleFile: filepath.Join(dir, "ca.crt"),
		BundleCheckInterval: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Log: logr.Discard()}, reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func run(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// eventually polls cond until it holds; it fails only after a long time, never on timing.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

func TestGetsItsCertificateBeforeItIsReady(t *testing.T) {
	ca := startCA(t, time.Hour, "")
	m, reg := newManager(t, ca, identitytest.PEM(ca.Root))
	if m.Ready() {
		t.Fatal("ready without a certificate")
	}
	if _, err := m.getCertificate(nil); err == nil {
		t.Fatal("a handshake would get a certificate before there is one")
	}
	run(t, m)
	eventually(t, "ready", m.Ready)
	leaf := m.Certificate().Leaf
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != testID {
		t.Fatalf("certificate for %v", leaf.URIs)
	}
	if got := testutil.ToFloat64(m.metrics.expiry); got != float64(leaf.NotAfter.Unix()) {
		t.Fatalf("expiry metric %v, certificate expires %d", got, leaf.NotAfter.Unix())
	}
	if n, _ := testutil.GatherAndCount(reg, "knit_proxy_certificate_expiry_timestamp_seconds"); n != 1 {
		t.Fatal("the expiry is not exported")
	}
	if _, ok := m.Certificate().PrivateKey.(*ecdsa.PrivateKey); !ok || leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatal("not an ECDSA key")
	}
}

// echo serves one TLS connection: it echoes lines back.
func echoServer(t *testing.T, cfg *tls.Config) string {
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write on the open connection: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("read on the open connection: %q %v", buf, err)
	}
}

func TestRenewsAtRenewBeforeWithoutDroppingConnections(t *testing.T) {
	// Certificates of 4 s renewed 3.5 s before expiry: a renewal every half second.
	ca := startCA(t, 4*time.Second, "3.5s")
	m, _ := newManager(t, ca, identitytest.PEM(ca.Root))
	run(t, m)
	eventually(t, "ready", m.Ready)
	addr := echoServer(t, m.ServerTLSConfig(nil))
	conn, err := tls.Dial("tcp", addr, m.ClientTLSConfig(testID))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip(t, conn, "before\n")
	first := conn.ConnectionState().PeerCertificates[0].SerialNumber

	issued := ca.Issued.Load()
	eventually(t, "two renewals", func() bool { return ca.Issued.Load() >= issued+2 })
	roundTrip(t, conn, "after renewals\n")

	again, err := tls.Dial("tcp", addr, m.ClientTLSConfig(testID))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(first) == 0 {
		t.Fatal("a new connection still got the first certificate")
	}
	if PeerID(again.ConnectionState()) != testID {
		t.Fatalf("peer ID %q", PeerID(again.ConnectionState()))
	}
}

func TestKeepsItsCertificateWhileTheControlPlaneIsDown(t *testing.T) {
	// Renewal is due a second after issue; then the control plane goes away.
	ca := startCA(t, time.Hour, "59m59s")
	m, _ := newManager(t, ca, identitytest.PEM(ca.Root))
	run(t, m)
	eventually(t, "ready", m.Ready)
	held := m.Certificate()
	ca.Stop()
	eventually(t, "failed renewals", func() bool {
		return testutil.ToFloat64(m.metrics.fetches.WithLabelValues("failure")) >= 3
	})
	if !m.Ready() || m.Certificate() != held {
		t.Fatal("the valid certificate was dropped while the control plane is down")
	}
	if c, err := m.getCertificate(nil); err != nil || c != held {
		t.Fatalf("handshakes get %v, %v", c, err)
	}
}

func TestRefusesACertificateForAnotherIdentity(t *testing.T) {
	ca := startCA(t, time.Hour, "")
	other := "spiffe://cluster.local/ns/shop/sa/admin"
	ca.IssueFor.Store(&other)
	m, _ := newManager(t, ca, identitytest.PEM(ca.Root))
	run(t, m)
	eventually(t, "refused answers", func() bool {
		return testutil.ToFloat64(m.metrics.fetches.WithLabelValues("failure")) >= 2
	})
	if m.Ready() || m.Certificate() != nil {
		t.Fatal("installed a certificate for another identity")
	}
}

func TestTrustBundleChangesApplyWithoutRestart(t *testing.T) {
	ca := startCA(t, time.Hour, "")
	newRootCert, newRootKey := identitytest.NewRoot(t, "next root")
	m, _ := newManager(t, ca, identitytest.PEM(ca.Root))
	run(t, m)
	eventually(t, "ready", m.Ready)

	// A peer whose certificate the next root signed: refused until the bundle holds both roots.
	peerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://cluster.local/ns/shop/sa/web")
	peer, err := identitytest.Sign(newRootCert, newRootKey, &peerKey.PublicKey, &x509.Certificate{URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.verifyPeer([][]byte{peer.Raw}, x509.ExtKeyUsageClientAuth, ""); err == nil {
		t.Fatal("a root not in the bundle was trusted")
	}
	writeFile(t, m.cfg.TrustBundleFile, identitytest.PEM(ca.Root)+identitytest.PEM(newRootCert))
	eventually(t, "both roots trusted", func() bool {
		id, err := m.verifyPeer([][]byte{peer.Raw}, x509.ExtKeyUsageClientAuth, "")
		return err == nil && id == u.String()
	})
	if testutil.ToFloat64(m.metrics.roots) != 2 {
		t.Fatalf("roots metric %v", testutil.ToFloat64(m.metrics.roots))
	}
	// The old root still verifies during the overlap.
	if _, err := m.verifyPeer(m.Certificate().Certificate, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Fatal(err)
	}

	writeFile(t, m.cfg.TrustBundleFile, "not a certificate")
	eventually(t, "bad bundle refused", func() bool {
		return testutil.ToFloat64(m.metrics.bundleReloads.WithLabelValues("failure")) >= 1
	})
	if _, err := m.verifyPeer([][]byte{peer.Raw}, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Fatalf("a bad bundle file replaced the roots in use: %v", err)
	}
}

func TestClientTLSConfigAcceptsOnlyTheExpectedIdentity(t *testing.T) {
	ca := startCA(t, time.Hour, "")
	m, _ := newManager(t, ca, identitytest.PEM(ca.Root))
	run(t, m)
	eventually(t, "ready", m.Ready)
	addr := echoServer(t, m.ServerTLSConfig(nil))
	_, err := tls.Dial("tcp", addr, m.ClientTLSConfig("spiffe://cluster.local/ns/shop/sa/payments"))
	if err == nil || !strings.Contains(err.Error(), "expected spiffe://cluster.local/ns/shop/sa/payments") {
		t.Fatalf("handshake with the wrong peer: %v", err)
	}
	// A client without a certificate is refused by the server side.
	plain, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_, err = plain.Read(make([]byte, 1))
		plain.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
}
