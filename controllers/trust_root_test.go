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

package controllers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// issue signs a certificate for cn with parent (self-signed when parent is nil).
func issue(t *testing.T, cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestTrustRootIsTheSelfSignedCAOfTheChain(t *testing.T) {
	root, rootKey := issue(t, "root", true, nil, nil)
	inter, interKey := issue(t, "intermediate", true, root, rootKey)
	leaf, _ := issue(t, "leaf", false, inter, interKey)
	// A certificate that claims the root's name but is signed by another key is no root.
	impostor, _ := issue(t, "root", true, &x509.Certificate{Subject: pkix.Name{CommonName: "root"}}, interKey)

	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  *x509.Certificate
	}{
		{"root alone", []*x509.Certificate{root}, root},
		{"intermediate then root", []*x509.Certificate{inter, root}, root},
		{"root then intermediate", []*x509.Certificate{root, inter}, root},
		{"intermediate only", []*x509.Certificate{inter}, nil},
		{"a leaf", []*x509.Certificate{leaf}, nil},
		{"nothing", nil, nil},
		{"an impostor root", []*x509.Certificate{impostor}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := selfSignedRoot(tc.chain); got != tc.want {
				name := "nil"
				if got != nil {
					name = got.Subject.CommonName
				}
				t.Errorf("selfSignedRoot = %s", name)
			}
		})
	}
}
