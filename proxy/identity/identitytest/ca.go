// Package identitytest runs an identity service for tests of the proxy side: a real gRPC server
// over TLS on loopback, speaking the control plane's API (Istio's CreateCertificate), that signs
// with an in-memory root. The control plane's own service is tested against a real API server
// and cert-manager (test/integration); this one lets proxy tests choose lifetimes, answer for
// another identity, or go away.
package identitytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityapi "istio.io/api/security/v1alpha1"
)

// Token is the bearer token the CA accepts.
const Token = "pod-token"

// CA is a running identity service.
type CA struct {
	securityapi.UnimplementedIstioCertificateServiceServer
	Root     *x509.Certificate
	RootKey  *ecdsa.PrivateKey
	Addr     string
	Lifetime time.Duration
	// RenewBefore, when set, is sent as the knit-renew-before header.
	RenewBefore string
	// IssueFor, when set, replaces the CSR's URI SAN: a CA answering for another identity.
	IssueFor atomic.Pointer[string]
	// Issued counts certificates issued.
	Issued atomic.Int32
	srv    *grpc.Server
}

var serial atomic.Int64

// NewRoot makes a self-signed root.
func NewRoot(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return root, key
}

// Sign issues tmpl for pub from root.
func Sign(root *x509.Certificate, rootKey *ecdsa.PrivateKey, pub any, tmpl *x509.Certificate) (*x509.Certificate, error) {
	tmpl.SerialNumber = big.NewInt(serial.Add(1) + 1000)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, pub, rootKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// PEM encodes a certificate.
func PEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// Start serves a CA issuing certificates of lifetime on 127.0.0.1 until the test ends; its
// serving certificate (for 127.0.0.1) is signed by its root.
func Start(t testing.TB, lifetime time.Duration, also ...func(testing.TB, *grpc.Server)) *CA {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return StartOn(t, l, lifetime, also...)
}

// StartOn serves the CA on l (a listener made in another network namespace, say); its serving
// certificate names l's IP address. also registers more services on the same server (a whole
// control plane: xdstest.Register).
func StartOn(t testing.TB, l net.Listener, lifetime time.Duration, also ...func(testing.TB, *grpc.Server)) *CA {
	t.Helper()
	root, key := NewRoot(t, "test root")
	ca := &CA{Root: root, RootKey: key, Lifetime: lifetime, Addr: l.Addr().String()}
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := Sign(root, key, &servingKey.PublicKey, &x509.Certificate{IPAddresses: []net.IP{l.Addr().(*net.TCPAddr).IP},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		t.Fatal(err)
	}
	ca.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{{
		Certificate: [][]byte{serving.Raw}, PrivateKey: servingKey}}})))
	securityapi.RegisterIstioCertificateServiceServer(ca.srv, ca)
	for _, register := range also {
		register(t, ca.srv)
	}
	go func() { _ = ca.srv.Serve(l) }()
	t.Cleanup(ca.srv.Stop)
	return ca
}

// Stop takes the CA away, as a control plane that is down.
func (ca *CA) Stop() { ca.srv.Stop() }

// CreateCertificate signs the CSR's key for its URI SAN (or IssueFor).
func (ca *CA) CreateCertificate(ctx context.Context, req *securityapi.IstioCertificateRequest) (*securityapi.IstioCertificateResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if auth := md.Get("authorization"); len(auth) != 1 || auth[0] != "Bearer "+Token {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	b, _ := pem.Decode([]byte(req.Csr))
	if b == nil {
		return nil, status.Error(codes.InvalidArgument, "no PEM")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		return nil, status.Error(codes.InvalidArgument, "bad csr")
	}
	uris := csr.URIs
	if other := ca.IssueFor.Load(); other != nil {
		u, _ := url.Parse(*other)
		uris = []*url.URL{u}
	}
	now := time.Now()
	leaf, err := Sign(ca.Root, ca.RootKey, csr.PublicKey, &x509.Certificate{URIs: uris, NotBefore: now.Add(-time.Second),
		NotAfter: now.Add(ca.Lifetime), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	ca.Issued.Add(1)
	if ca.RenewBefore != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs("knit-renew-before", ca.RenewBefore))
	}
	return &securityapi.IstioCertificateResponse{CertChain: []string{PEM(leaf), PEM(ca.Root)}}, nil
}
