package dataplane

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/httpproxy"
	"github.com/knit-mesh/knit/proxy/identity"
	"github.com/knit-mesh/knit/proxy/identity/identitytest"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/mtls"
)

const (
	webID  = "spiffe://cluster.local/ns/shop/sa/web"
	cartID = "spiffe://cluster.local/ns/shop/sa/cart"
)

// workloadIdentity runs a proxy's certificate manager against ca and waits for its certificate.
func workloadIdentity(t testing.TB, ca *identitytest.CA, id string, reg prometheus.Registerer) *identity.Manager {
	t.Helper()
	dir := t.TempDir()
	token, bundle := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	os.WriteFile(token, []byte(identitytest.Token), 0o600)
	os.WriteFile(bundle, []byte(identitytest.PEM(ca.Root)), 0o600)
	m, err := identity.New(identity.Config{Address: ca.Addr, ID: id, TokenFile: token, TrustBundleFile: bundle, Log: logr.Discard()}, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(30 * time.Second); !m.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no certificate")
		}
	}
	return m
}

// startMeshedSidecar runs the sidecar's listeners with inbound mTLS in mode, as identity web;
// every connection's original destination is app.
func startMeshedSidecar(t *testing.T, ca *identitytest.CA, mode mtls.Mode, app string) (*Proxy, *mtls.Inbound) {
	t.Helper()
	cfg, err := config.Parse([]byte(passthroughYAML))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	in, err := mtls.NewInbound(mode, workloadIdentity(t, ca, webID, m.Registry), logr.Discard(), m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	p := New(logr.Discard(), m)
	p.Inbound = in
	dst := netip.MustParseAddrPort(app)
	p.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return dst, nil }
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Drain(ctx)
	})
	return p, in
}

// peerEcho answers with the peer identity header the app received.
func peerEcho(t *testing.T) string {
	return httpUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "peer="+r.Header.Get(httpproxy.PeerIdentityHeader))
	})
}

func getBody(t *testing.T, c *http.Client, url string) (string, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set(httpproxy.PeerIdentityHeader, "spiffe://cluster.local/ns/kube-system/sa/forged")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// meshClient is another sidecar's outbound side: mutual TLS as cart, expecting web.
func meshClient(m *identity.Manager) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: m.ClientTLSConfig(webID), DisableKeepAlives: true}}
}

func connections(_ *mtls.Inbound, reg *prometheus.Registry, security, peer string) float64 {
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() != "knit_proxy_inbound_connections_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["security"] == security && labels["peer_identity"] == peer {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestInboundPermissiveTakesMutualTLSAndPlaintextAndTellsTheAppWhoCalled(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	p, in := startMeshedSidecar(t, ca, mtls.Permissive, peerEcho(t))
	inbound := addr(t, p, "inbound")
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())

	body, err := getBody(t, meshClient(cart), "https://"+inbound+"/")
	if err != nil || body != "peer="+cartID {
		t.Fatalf("over mutual TLS: %q %v", body, err)
	}
	body, err = getBody(t, client(), "http://"+inbound+"/")
	if err != nil || body != "peer=" {
		t.Fatalf("plaintext: %q %v (a forged identity must be removed)", body, err)
	}
	reg := p.Metrics.Registry
	if connections(in, reg, "mtls", cartID) != 1 || connections(in, reg, "plaintext", "") != 1 {
		t.Fatalf("connection metrics: mtls %v, plaintext %v", connections(in, reg, "mtls", cartID), connections(in, reg, "plaintext", ""))
	}
}

func TestInboundStrictRefusesPlaintext(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	p, in := startMeshedSidecar(t, ca, mtls.Strict, peerEcho(t))
	inbound := addr(t, p, "inbound")
	if _, err := getBody(t, client(), "http://"+inbound+"/"); err == nil {
		t.Fatal("plaintext was served under STRICT")
	}
	for deadline := time.Now().Add(30 * time.Second); connections(in, p.Metrics.Registry, "refused", "") != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("refused connections: %v", connections(in, p.Metrics.Registry, "refused", ""))
		}
	}
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	if body, err := getBody(t, meshClient(cart), "https://"+inbound+"/"); err != nil || body != "peer="+cartID {
		t.Fatalf("mutual TLS under STRICT: %q %v", body, err)
	}
	// TLS that is not a mesh peer's (no knit ALPN) is plaintext to the mesh: refused too.
	conn, err := tls.Dial("tcp", inbound, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("an app's own TLS got through under STRICT")
	}
}

func TestInboundPermissivePassesAnAppsOwnTLSThrough(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	app := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app tls") }))
	t.Cleanup(app.Close)
	p, _ := startMeshedSidecar(t, ca, mtls.Permissive, strings.TrimPrefix(app.URL, "https://"))
	c := app.Client()
	resp, err := c.Get("https://" + addr(t, p, "inbound") + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "app tls" {
		t.Fatalf("%q", b)
	}
}

func TestInboundRefusesAPeerWithoutAMeshCertificate(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	p, in := startMeshedSidecar(t, ca, mtls.Permissive, peerEcho(t))
	// Another CA's workload: offers knit's ALPN but does not chain to the trust bundle.
	other := identitytest.Start(t, time.Hour)
	stranger := workloadIdentity(t, other, cartID, prometheus.NewRegistry())
	cfg := stranger.ClientTLSConfig(webID)
	cfg.VerifyPeerCertificate = nil // it would refuse our server too; the point is the server's check
	_, err := getBody(t, &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, "https://"+addr(t, p, "inbound")+"/")
	if err == nil {
		t.Fatal("a certificate from another root was accepted")
	}
	// The server counts after its side of the handshake ends, which may be after the client's.
	for deadline := time.Now().Add(30 * time.Second); connections(in, p.Metrics.Registry, "refused", "") < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failed handshake was not counted")
		}
	}
}

// A mesh peer leaving ends the exchange the server sidecar runs for it: a close_notify alone
// (the socket stays open) as well as the socket closing without one.
func TestMeshPeerGoingAwayEndsItsExchange(t *testing.T) {
	ca := identitytest.Start(t, time.Hour)
	arrived, gaveUp := make(chan struct{}, 10), make(chan struct{}, 10)
	p, _ := startMeshedSidecar(t, ca, mtls.Permissive, httpUpstream(t, stuckHandler(arrived, gaveUp)))
	cart := workloadIdentity(t, ca, cartID, prometheus.NewRegistry())
	for name, leave := range map[string]func(tc *tls.Conn, raw net.Conn){
		"close_notify":            func(tc *tls.Conn, _ net.Conn) { tc.CloseWrite() },
		"socket closed, no alert": func(_ *tls.Conn, raw net.Conn) { raw.Close() },
	} {
		t.Run(name, func(t *testing.T) {
			raw, err := net.Dial("tcp", addr(t, p, "inbound"))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			tc := tls.Client(raw, cart.ClientTLSConfig(webID))
			if _, err := io.WriteString(tc, "GET /stuck HTTP/1.1\r\nHost: web\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			await(t, arrived, "the request to reach the app")
			leave(tc, raw)
			await(t, gaveUp, "the app's request to end with its peer")
		})
	}
}
