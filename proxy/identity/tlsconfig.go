package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

var errNoCertificate = errors.New("no workload certificate yet")

// ErrPeerIdentityMismatch: the peer's certificate is a valid mesh certificate for another
// SPIFFE ID than the one expected of it. ErrUntrustedPeer: the peer's certificate does not
// chain to the trust bundle or carries no SPIFFE ID of this trust domain. Handshake errors
// wrap them.
var (
	ErrPeerIdentityMismatch = errors.New("peer identity mismatch")
	ErrUntrustedPeer        = errors.New("untrusted peer certificate")
)

// ALPN is the protocol a sidecar offers when it opens mutual TLS to another: the inbound side
// tells mesh traffic from an app's own TLS by it.
const ALPN = "knit-mtls"

func (m *Manager) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

func (m *Manager) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// ServerTLSConfig is the inbound side of mutual TLS: it presents the current certificate and
// requires a client certificate that chains to the current trust bundle and carries one SPIFFE
// ID of this trust domain. The callbacks read the certificate and roots at each handshake, so
// renewals and root rotations apply to the next connection and leave open ones alone.
func (m *Manager) ServerTLSConfig(nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     nextProtos,
		GetCertificate: m.getCertificate,
		ClientAuth:     tls.RequireAnyClientCert,
		// Sidecars keep no session cache (pooled connections make resumption pointless), so
		// tickets would only cost an encryption and a record per connection.
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := m.verifyPeer(raw, x509.ExtKeyUsageClientAuth, "")
			return err
		},
	}
}

// ClientTLSConfig is the hook for outbound mutual TLS to a meshed endpoint: it presents the
// current certificate and accepts only a server certificate that chains to the current trust
// bundle and carries exactly expectedID (the identity discovery says the endpoint has). Host
// names play no part: the SPIFFE ID is the server's name.
func (m *Manager) ClientTLSConfig(expectedID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{ALPN},
		// The standard check compares host names; VerifyPeerCertificate below does the whole
		// verification instead, against the live roots and the SPIFFE ID.
		InsecureSkipVerify:   true,
		GetClientCertificate: m.getClientCertificate,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := m.verifyPeer(raw, x509.ExtKeyUsageServerAuth, expectedID)
			return err
		},
	}
}

// verifyPeer checks a peer's chain against the current roots for usage, and that its leaf
// carries exactly one URI SAN, a SPIFFE ID of this trust domain (equal to want when set).
func (m *Manager) verifyPeer(raw [][]byte, usage x509.ExtKeyUsage, want string) (string, error) {
	if len(raw) == 0 {
		return "", fmt.Errorf("%w: the peer sent no certificate", ErrUntrustedPeer)
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, der := range raw {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", fmt.Errorf("%w: peer certificate: %w", ErrUntrustedPeer, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: m.bundle.pool(), Intermediates: inter,
		CurrentTime: m.now(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return "", fmt.Errorf("%w: peer certificate does not chain to the mesh's trust bundle: %w", ErrUntrustedPeer, err)
	}
	id, err := spiffeIDOf(certs[0], m.trustDomain)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUntrustedPeer, err)
	}
	if want != "" && id != want {
		return "", fmt.Errorf("%w: peer is %s, expected %s", ErrPeerIdentityMismatch, id, want)
	}
	return id, nil
}

func spiffeIDOf(leaf *x509.Certificate, trustDomain string) (string, error) {
	if len(leaf.URIs) != 1 {
		return "", fmt.Errorf("peer certificate carries %d URI SANs, want one SPIFFE ID", len(leaf.URIs))
	}
	id := leaf.URIs[0].String()
	if !strings.HasPrefix(id, "spiffe://"+trustDomain+"/") {
		return "", fmt.Errorf("peer %s is not in trust domain %s", id, trustDomain)
	}
	return id, nil
}

// PeerID is the SPIFFE ID of the peer of a connection made with ServerTLSConfig or
// ClientTLSConfig (whose verification ran in the handshake), or "" when it has no certificate.
func PeerID(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 || len(cs.PeerCertificates[0].URIs) != 1 {
		return ""
	}
	return cs.PeerCertificates[0].URIs[0].String()
}
