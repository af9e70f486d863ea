// Package identity gives the sidecar its workload certificate: a key generated in memory
// (ECDSA P-256, never written anywhere), a CSR for the pod's SPIFFE ID sent with the projected
// ServiceAccount token to the control plane's identity service (Istio's CA API), renewal before
// expiry, and the trust bundle re-read from its file when it changes. Listeners take the
// certificate through tls.Config callbacks, so a renewal or a root rotation never drops a
// connection and never needs a restart.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityapi "istio.io/api/security/v1alpha1"
)

// HeaderRenewBefore is the control plane's answer header saying how long before expiry to renew
// (the Mesh's trust.workloadCertRenewBefore); without it a third of the lifetime is left.
const HeaderRenewBefore = "knit-renew-before"

// Config says where to ask and who this proxy is.
type Config struct {
	// Address is host:port of the identity service; the host must be a name in its serving
	// certificate, which is verified against the trust bundle.
	Address string
	// ID is the SPIFFE ID the certificate must carry (KNIT_IDENTITY).
	ID string
	// TokenFile is the projected ServiceAccount token, read at every request (the kubelet
	// rotates it); TrustBundleFile holds the PEM roots (the knit-trust-bundle ConfigMap).
	TokenFile, TrustBundleFile string
	// BundleCheckInterval is how often the trust bundle file is compared with what is loaded.
	BundleCheckInterval time.Duration
	// MinBackoff and MaxBackoff bound the jittered wait after a failed request.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one request to the identity service.
	RequestTimeout time.Duration
	Log            logr.Logger
}

func (c *Config) setDefaults() {
	if c.BundleCheckInterval == 0 {
		c.BundleCheckInterval = 5 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 2 * time.Minute
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 40 * time.Second
	}
}

// Manager holds the current certificate and trust bundle and keeps them fresh.
type Manager struct {
	cfg         Config
	trustDomain string
	cert        atomic.Pointer[tls.Certificate] // Leaf set
	renewBefore atomic.Int64                    // from the last answer; 0 = a third of the lifetime
	bundle      *bundle
	metrics     *metrics
	now         func() time.Time
	// generation counts installed certificates and trust bundle changes, so outbound pools can
	// stop reusing connections made with what was in use before.
	generation atomic.Uint64
}

// New checks the configuration and loads the trust bundle; Run fetches the first certificate.
func New(cfg Config, reg prometheus.Registerer) (*Manager, error) {
	cfg.setDefaults()
	u, err := url.Parse(cfg.ID)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" || u.Path == "" {
		return nil, fmt.Errorf("identity %q is not a SPIFFE ID (spiffe://<trust domain>/ns/<ns>/sa/<sa>)", cfg.ID)
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("identity service address %q: %w", cfg.Address, err)
	}
	if cfg.TokenFile == "" || cfg.TrustBundleFile == "" {
		return nil, errors.New("identity: the token file and the trust bundle file are required")
	}
	m := &Manager{cfg: cfg, trustDomain: u.Host, now: time.Now}
	if m.metrics, err = newMetrics(reg); err != nil {
		return nil, err
	}
	m.bundle = &bundle{path: cfg.TrustBundleFile}
	if _, err := m.bundle.reload(); err != nil {
		return nil, err
	}
	m.metrics.roots.Set(float64(m.bundle.count()))
	return m, nil
}

// ID is the SPIFFE ID this proxy holds a certificate for.
func (m *Manager) ID() string { return m.cfg.ID }

// TrustDomain is the trust domain of ID.
func (m *Manager) TrustDomain() string { return m.trustDomain }

// Ready says whether a certificate valid now is held.
func (m *Manager) Ready() bool {
	c := m.cert.Load()
	return c != nil && m.now().Before(c.Leaf.NotAfter)
}

// Certificate is the current certificate, or nil before the first one.
func (m *Manager) Certificate() *tls.Certificate { return m.cert.Load() }

// Generation changes whenever a new certificate is installed or the trust bundle changes.
func (m *Manager) Generation() uint64 { return m.generation.Load() }

// Roots is the current trust bundle.
func (m *Manager) Roots() *x509.CertPool { return m.bundle.pool() }

// Run fetches the first certificate, then renews it before expiry and follows the trust
// bundle file, until ctx ends. Failures are retried with jittered backoff; the certificate in
// hand is kept (and served) until it expires.
func (m *Manager) Run(ctx context.Context) {
	go m.followBundle(ctx)
	backoff := m.cfg.MinBackoff
	for {
		wait := m.untilRenewal()
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		err := m.renew(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			m.metrics.fetches.WithLabelValues("success").Inc()
			backoff = m.cfg.MinBackoff
			continue
		}
		m.metrics.fetches.WithLabelValues("failure").Inc()
		retry := jitter(backoff)
		m.cfg.Log.Error(err, "workload certificate request failed; keeping the current certificate", "retryIn", retry.String(),
			"holding", m.Ready())
		backoff = min(2*backoff, m.cfg.MaxBackoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// untilRenewal is how long the current certificate may be kept before renewing.
func (m *Manager) untilRenewal() time.Duration {
	c := m.cert.Load()
	if c == nil {
		return 0
	}
	before := time.Duration(m.renewBefore.Load())
	if before <= 0 {
		before = c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) / 3
	}
	return c.Leaf.NotAfter.Add(-before).Sub(m.now())
}

// jitter spreads retries of many proxies: d ±20 %.
func jitter(d time.Duration) time.Duration {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d)*2/5+1))
	if err != nil {
		return d
	}
	return d - d/5 + time.Duration(n.Int64())
}

// renew generates a fresh key, asks for a certificate for it and installs the answer.
func (m *Manager) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating a key: %w", err)
	}
	id, _ := url.Parse(m.cfg.ID)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return fmt.Errorf("creating the CSR: %w", err)
	}
	token, err := os.ReadFile(m.cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("reading the ServiceAccount token: %w", err)
	}
	chain, renewBefore, err := m.request(ctx, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		strings.TrimSpace(string(token)))
	if err != nil {
		return err
	}
	cert, err := m.certificateFrom(chain, key)
	if err != nil {
		return err
	}
	m.renewBefore.Store(int64(renewBefore))
	m.cert.Store(cert)
	m.generation.Add(1)
	m.metrics.expiry.Set(float64(cert.Leaf.NotAfter.Unix()))
	m.cfg.Log.Info("workload certificate installed", "identity", m.cfg.ID, "notAfter", cert.Leaf.NotAfter.UTC().Format(time.RFC3339),
		"renewIn", m.untilRenewal().Round(time.Second).String())
	return nil
}

// request calls the identity service over TLS, verifying it against the current trust bundle.
// A connection per request: renewals are hours apart, and the roots may have changed since.
func (m *Manager) request(ctx context.Context, csr, token string) ([]string, time.Duration, error) {
	host, _, _ := net.SplitHostPort(m.cfg.Address)
	creds := credentials.NewTLS(&tls.Config{ServerName: host, RootCAs: m.bundle.pool(), MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(m.cfg.Address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, 0, fmt.Errorf("identity service %s: %w", m.cfg.Address, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RequestTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	var header metadata.MD
	resp, err := securityapi.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx,
		&securityapi.IstioCertificateRequest{Csr: csr}, grpc.Header(&header))
	if err != nil {
		return nil, 0, fmt.Errorf("identity service %s: %w", m.cfg.Address, err)
	}
	var renewBefore time.Duration
	if v := header.Get(HeaderRenewBefore); len(v) == 1 {
		renewBefore, _ = time.ParseDuration(v[0])
	}
	return resp.GetCertChain(), renewBefore, nil
}

// certificateFrom checks an answer (leaf first, the trust bundle last) and builds the TLS
// certificate: the leaf must be for key and carry exactly this proxy's SPIFFE ID.
func (m *Manager) certificateFrom(chain []string, key *ecdsa.PrivateKey) (*tls.Certificate, error) {
	if len(chain) < 2 {
		return nil, fmt.Errorf("the identity service answered %d PEM elements, want the chain then the trust bundle", len(chain))
	}
	cert := &tls.Certificate{PrivateKey: key}
	for _, text := range chain[:len(chain)-1] {
		rest := []byte(text)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				cert.Certificate = append(cert.Certificate, b.Bytes)
			}
		}
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("the identity service answered no certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("the issued certificate: %w", err)
	}
	switch {
	case !key.PublicKey.Equal(leaf.PublicKey):
		return nil, errors.New("the issued certificate is not for this proxy's key")
	case len(leaf.URIs) != 1 || leaf.URIs[0].String() != m.cfg.ID:
		return nil, fmt.Errorf("the issued certificate names %v, not %s", leaf.URIs, m.cfg.ID)
	case !m.now().Before(leaf.NotAfter):
		return nil, fmt.Errorf("the issued certificate expired at %s", leaf.NotAfter)
	}
	cert.Leaf = leaf
	return cert, nil
}

// followBundle re-reads the trust bundle file when its content changes.
func (m *Manager) followBundle(ctx context.Context) {
	t := time.NewTicker(m.cfg.BundleCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := m.bundle.reload()
		switch {
		case err != nil:
			m.metrics.bundleReloads.WithLabelValues("failure").Inc()
			m.cfg.Log.Error(err, "trust bundle not reloaded; keeping the roots in use")
		case changed:
			m.generation.Add(1)
			m.metrics.bundleReloads.WithLabelValues("success").Inc()
			m.metrics.roots.Set(float64(m.bundle.count()))
			m.cfg.Log.Info("trust bundle reloaded", "roots", m.bundle.count())
		}
	}
}
