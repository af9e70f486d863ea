package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/knit-mesh/knit/proxy/config"
)

func pemPair(t *testing.T, cn string) config.PEMKeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return config.PEMKeyPair{
		CertificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyPEM:         string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})),
	}
}

// The certificate follows the client's server name: exact, then the longest wildcard, then the
// entry without names; without such an entry an unknown name gets no certificate.
func TestSNIConfigChoosesByServerName(t *testing.T) {
	entries := []config.SNICertificates{
		{Name: "any", Certificates: []config.PEMKeyPair{pemPair(t, "any")}},
		{Name: "wild", ServerNames: []string{"*.example.com"}, Certificates: []config.PEMKeyPair{pemPair(t, "wild")}},
		{Name: "deep", ServerNames: []string{"*.shop.example.com"}, Certificates: []config.PEMKeyPair{pemPair(t, "deep")}},
		{Name: "exact", ServerNames: []string{"cart.shop.example.com"}, Certificates: []config.PEMKeyPair{pemPair(t, "exact")}},
	}
	cfg, err := SNIConfig(entries, []string{"h2"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}
	for name, want := range map[string]string{
		"cart.shop.example.com": "exact", "CART.shop.example.com.": "exact", "pay.shop.example.com": "deep",
		"www.example.com": "wild", "example.com": "any", "other.org": "any", "": "any",
	} {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		if leaf.Subject.CommonName != want {
			t.Errorf("%q: certificate %s, want %s", name, leaf.Subject.CommonName, want)
		}
	}
	noDefault, err := SNIConfig(entries[1:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noDefault.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.org"}); err == nil {
		t.Error("a name no entry serves got a certificate")
	}
	if _, err := SNIConfig([]config.SNICertificates{{Name: "bad", Certificates: []config.PEMKeyPair{{CertificatePEM: "Hello", KeyPEM: "world"}}}}, nil); err == nil {
		t.Error("a malformed pair was accepted")
	}
}
