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

package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	securityapi "istio.io/api/security/v1alpha1"
)

const testID = "spiffe://cluster.local/ns/shop/sa/cart"

func csrPEM(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func uris(t testing.TB, ids ...string) []*url.URL {
	var out []*url.URL
	for _, id := range ids {
		u, err := url.Parse(id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// sanExtension is a raw subjectAltName holding the given GeneralNames.
func sanExtension(t testing.TB, names ...asn1.RawValue) pkix.Extension {
	der, err := asn1.Marshal(names)
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: der}
}

func TestParseCSRAcceptsOneSPIFFEURIAndPermittedKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for name, key := range map[string]crypto.Signer{"P-256": p256(t), "P-384": p384, "RSA-2048": rsaKey} {
		csr, _, err := parseCSR(csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID)}))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := checkIdentity(csr, testID); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestParseCSRRefusesAnythingButOneURI(t *testing.T) {
	key := p256(t)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	valid := csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID)})
	block, _ := pem.Decode([]byte(valid))
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-5] ^= 0xff

	for _, tc := range []struct {
		name string
		csr  string
		want Reason
	}{
		{"extra DNS SAN", csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID), DNSNames: []string{"cart.shop.svc"}}), ReasonForbiddenName},
		{"IP SAN", csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID), IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), ReasonForbiddenName},
		{"email SAN", csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID), EmailAddresses: []string{"a@b.c"}}), ReasonForbiddenName},
		{"common name", csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID), Subject: pkix.Name{CommonName: "cart"}}), ReasonForbiddenName},
		{"organization", csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID), Subject: pkix.Name{Organization: []string{"x"}}}), ReasonForbiddenName},
		{"otherName SAN x509 does not parse", csrPEM(t, key, &x509.CertificateRequest{ExtraExtensions: []pkix.Extension{sanExtension(t,
			asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(testID)},
			asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: []byte{0x06, 0x01, 0x2a, 0xa0, 0x03, 0x0c, 0x01, 0x61}},
		)}}), ReasonForbiddenName},
		{"two URIs", csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID, "spiffe://cluster.local/ns/x/sa/y")}), ReasonIdentityMismatch},
		{"no SAN", csrPEM(t, key, &x509.CertificateRequest{}), ReasonIdentityMismatch},
		{"other extension", csrPEM(t, key, &x509.CertificateRequest{URIs: uris(t, testID),
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}}}), ReasonForbiddenName},
		{"Ed25519 key", csrPEM(t, edKey, &x509.CertificateRequest{URIs: uris(t, testID)}), ReasonKeyType},
		{"P-224 key", csrPEM(t, p224, &x509.CertificateRequest{URIs: uris(t, testID)}), ReasonKeyType},
		{"RSA-1024 key", csrPEM(t, smallRSA, &x509.CertificateRequest{URIs: uris(t, testID)}), ReasonKeyType},
		{"bad self-signature", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered})), ReasonCSRSignature},
		{"not PEM", "hello", ReasonMalformedCSR},
		{"empty", "", ReasonMalformedCSR},
		{"wrong PEM type", strings.Replace(valid, "CERTIFICATE REQUEST", "CERTIFICATE", 2), ReasonMalformedCSR},
		{"two blocks", valid + valid, ReasonMalformedCSR},
		{"garbage DER", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}})), ReasonMalformedCSR},
		{"huge", strings.Repeat("A", maxCSRBytes+1), ReasonTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseCSR(tc.csr)
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.want)
			}
			if !strings.HasPrefix(status.Convert(err).Message(), string(tc.want)+": ") {
				t.Fatalf("status message %q does not name the reason", status.Convert(err).Message())
			}
		})
	}
}

func TestCheckIdentityRefusesAnotherWorkload(t *testing.T) {
	for _, id := range []string{
		"spiffe://cluster.local/ns/other/sa/cart",
		"spiffe://cluster.local/ns/shop/sa/admin",
		"spiffe://evil.example/ns/shop/sa/cart",
		"spiffe://cluster.local/ns/shop/sa/cart/extra",
	} {
		csr, _, err := parseCSR(csrPEM(t, p256(t), &x509.CertificateRequest{URIs: uris(t, id)}))
		if err != nil {
			t.Fatal(err)
		}
		err = checkIdentity(csr, testID)
		if ReasonOf(err) != ReasonIdentityMismatch || status.Code(err) != codes.PermissionDenied {
			t.Fatalf("%s: %v", id, err)
		}
	}
}

func TestPrecheckRefusesExpiredLongLivedAndOtherAudienceTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	ok := claims{Iat: now.Unix() - 60, Exp: now.Unix() + 3540, Audience: audience{"knit.dev"}}
	if err := precheck(ok, "knit.dev", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    claims
		want Reason
	}{
		{claims{Iat: now.Unix() - 3600, Exp: now.Unix(), Audience: audience{"knit.dev"}}, ReasonTokenExpired},
		{claims{Iat: now.Unix(), Audience: audience{"knit.dev"}}, ReasonTokenExpired},
		{claims{Iat: now.Unix(), Exp: now.Unix() + 3601, Audience: audience{"knit.dev"}}, ReasonTokenLifetime},
		{claims{Exp: now.Unix() + 60, Audience: audience{"knit.dev"}}, ReasonTokenLifetime},
		{claims{Iat: now.Unix(), Exp: now.Unix() + 600, Audience: audience{"https://kubernetes.default.svc"}}, ReasonWrongAudience},
	} {
		if got := ReasonOf(precheck(tc.c, "knit.dev", time.Hour, now)); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.c, got, tc.want)
		}
	}
}

func TestReadClaimsTakesOneAudienceOrAList(t *testing.T) {
	for _, payload := range []string{`{"aud":"knit.dev","exp":2,"iat":1}`, `{"aud":["x","knit.dev"],"exp":2,"iat":1}`} {
		tok := "e30." + strings.TrimRight(b64(payload), "=") + ".sig"
		c, err := readClaims(tok)
		if err != nil {
			t.Fatal(err)
		}
		if c.Exp != 2 || c.Iat != 1 || !strings.Contains(strings.Join(c.Audience, ","), "knit.dev") {
			t.Fatalf("%+v", c)
		}
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + b64("[1]") + ".c", strings.Repeat("a", maxTokenBytes+1)} {
		if ReasonOf(func() error { _, err := readClaims(bad); return err }()) != ReasonMalformedToken {
			t.Errorf("%.20q accepted", bad)
		}
	}
}

func TestServiceAccountUser(t *testing.T) {
	for user, want := range map[string]string{
		"system:serviceaccount:shop:cart": "shop/cart",
		"system:serviceaccount:shop":      "",
		"system:serviceaccount::cart":     "",
		"system:serviceaccount:a:b:c":     "",
		"admin":                           "",
	} {
		ns, sa, ok := serviceAccountUser(user)
		got := ""
		if ok {
			got = ns + "/" + sa
		}
		if got != want {
			t.Errorf("%q: %q, want %q", user, got, want)
		}
	}
}

// FuzzDecodeRequest feeds arbitrary bytes through what the server does with a request before
// any API call: protobuf decoding and the CSR's checks. It must never panic, and anything it
// accepts carries exactly one URI SAN and a permitted key with a valid signature.
func FuzzDecodeRequest(f *testing.F) {
	key := p256(f)
	for _, csr := range []string{
		csrPEM(f, key, &x509.CertificateRequest{URIs: uris(f, testID)}),
		csrPEM(f, key, &x509.CertificateRequest{URIs: uris(f, testID), DNSNames: []string{"a"}}),
		"-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n",
	} {
		raw, err := proto.Marshal(&securityapi.IstioCertificateRequest{Csr: csr, ValidityDuration: 3600})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req securityapi.IstioCertificateRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			return
		}
		csr, der, err := parseCSR(req.GetCsr())
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if len(csr.URIs) != 1 || len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 || len(der) == 0 {
			t.Fatalf("accepted a CSR with other names: %v %v", csr.URIs, csr.DNSNames)
		}
		if permittedKey(csr.PublicKey) != nil || csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR with a bad key or signature")
		}
		_ = checkIdentity(csr, testID)
	})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
