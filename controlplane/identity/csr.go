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
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"google.golang.org/grpc/codes"
)

// maxCSRBytes bounds the PEM text of a CSR: one with a P-256 or RSA-4096 key and one URI is
// far below it.
const maxCSRBytes = 8 << 10

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// generalNameKinds names the GeneralName choices (RFC 5280 4.2.1.6) by tag number, for refusals.
var generalNameKinds = map[uint8]string{
	0: "otherName", 1: "email address", 2: "DNS name", 3: "x400Address", 4: "directoryName",
	5: "ediPartyName", 6: "URI", 7: "IP address", 8: "registeredID",
}

// parseCSR decodes and checks what does not depend on who asks: one PEM block and nothing
// else, a permitted key, a valid self-signature, an empty subject, and no extension but a
// subjectAltName made of exactly one URI. It returns the CSR and its DER, and a refusal for
// anything else.
func parseCSR(text string) (*x509.CertificateRequest, []byte, error) {
	if len(text) > maxCSRBytes {
		return nil, nil, refuse(ReasonTooLarge, codes.InvalidArgument, "the CSR is %d bytes, more than %d", len(text), maxCSRBytes)
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, nil, refuse(ReasonMalformedCSR, codes.InvalidArgument, "csr is not one PEM block of type CERTIFICATE REQUEST")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, nil, refuse(ReasonMalformedCSR, codes.InvalidArgument, "csr has data after its PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, nil, refuse(ReasonMalformedCSR, codes.InvalidArgument, "csr: %v", err)
	}
	if err := permittedKey(csr.PublicKey); err != nil {
		return nil, nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, refuse(ReasonCSRSignature, codes.InvalidArgument, "the CSR's self-signature does not verify: %v", err)
	}
	if len(csr.Subject.Names) > 0 {
		return nil, nil, refuse(ReasonForbiddenName, codes.InvalidArgument,
			"the CSR has a subject (%s); a workload identity is its URI SAN alone", csr.Subject)
	}
	var sans int
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			return nil, nil, refuse(ReasonForbiddenName, codes.InvalidArgument,
				"the CSR asks for extension %s; only a subjectAltName with one URI is permitted", ext.Id)
		}
		sans++
		if err := checkSANExtension(ext.Value); err != nil {
			return nil, nil, err
		}
	}
	if sans != 1 || len(csr.URIs) != 1 {
		return nil, nil, refuse(ReasonIdentityMismatch, codes.InvalidArgument,
			"the CSR must carry exactly one URI SAN (its SPIFFE ID); it has %d subjectAltName extensions and %d URIs", sans, len(csr.URIs))
	}
	return csr, block.Bytes, nil
}

// checkSANExtension reads the subjectAltName itself rather than trusting x509's parse, which
// skips the name kinds it does not know (otherName, directoryName) and a signer might not.
func checkSANExtension(der []byte) error {
	in := cryptobyte.String(der)
	var names cryptobyte.String
	if !in.ReadASN1(&names, cbasn1.SEQUENCE) || !in.Empty() {
		return refuse(ReasonMalformedCSR, codes.InvalidArgument, "the CSR's subjectAltName is not a DER sequence")
	}
	count := 0
	for !names.Empty() {
		var name cryptobyte.String
		var tag cbasn1.Tag
		if !names.ReadAnyASN1(&name, &tag) {
			return refuse(ReasonMalformedCSR, codes.InvalidArgument, "the CSR's subjectAltName holds a malformed name")
		}
		if tag != cbasn1.Tag(6).ContextSpecific() {
			kind, ok := generalNameKinds[uint8(tag)&0x1f]
			if !ok {
				kind = fmt.Sprintf("name of tag %d", uint8(tag)&0x1f)
			}
			return refuse(ReasonForbiddenName, codes.InvalidArgument,
				"the CSR asks for a %s; only one URI SAN (the SPIFFE ID) is permitted", kind)
		}
		count++
	}
	if count != 1 {
		return refuse(ReasonIdentityMismatch, codes.InvalidArgument, "the CSR carries %d URI SANs; exactly one is permitted", count)
	}
	return nil
}

// permittedKey accepts ECDSA P-256 (what knit-proxy generates) and P-384, and RSA of 2048 to
// 4096 bits (what Istio's agent generates by default); nothing else.
func permittedKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return refuse(ReasonKeyType, codes.InvalidArgument, "ECDSA curve %s is not permitted (P-256 or P-384)", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits >= 2048 && bits <= 4096 {
			return nil
		}
		return refuse(ReasonKeyType, codes.InvalidArgument, "an RSA key of %d bits is not permitted (2048 to 4096)", k.N.BitLen())
	default:
		return refuse(ReasonKeyType, codes.InvalidArgument, "a %T key is not permitted (ECDSA P-256 or P-384, RSA 2048-4096)", pub)
	}
}

// SPIFFEID is spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// checkIdentity refuses a CSR whose one URI is not want.
func checkIdentity(csr *x509.CertificateRequest, want string) error {
	got := csr.URIs[0].String()
	if got != want {
		return refuse(ReasonIdentityMismatch, codes.PermissionDenied,
			"the CSR asks for %s but the token is for %s", strings.TrimSpace(got), want)
	}
	return nil
}
