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

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func selfSigned(t *testing.T, cn string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: notAfter.Add(-365 * 24 * time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func commonNames(t *testing.T, pems [][]byte) []string {
	t.Helper()
	var out []string
	for _, p := range pems {
		for _, c := range parseCertificates(p) {
			out = append(out, c.Subject.CommonName)
		}
	}
	return out
}

func TestMergeRootsKeepsValidPreviousRootsBehindTheCurrentOne(t *testing.T) {
	now := time.Now()
	current := selfSigned(t, "new", now.Add(365*24*time.Hour))
	old := selfSigned(t, "old", now.Add(30*24*time.Hour))
	expired := selfSigned(t, "expired", now.Add(-time.Hour))
	tests := []struct {
		name     string
		previous []*x509.Certificate
		want     []string
	}{
		{"first root", nil, []string{"new"}},
		{"unchanged root is not repeated", []*x509.Certificate{current}, []string{"new"}},
		{"rotation keeps the old root", []*x509.Certificate{old}, []string{"new", "old"}},
		{"expired roots are dropped", []*x509.Certificate{old, expired}, []string{"new", "old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := commonNames(t, mergeRoots(current, tt.previous, now))
			if len(got) != len(tt.want) {
				t.Fatalf("bundle = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("bundle = %v, want %v", got, tt.want)
				}
			}
		})
	}
	var many []*x509.Certificate
	for range 10 {
		many = append(many, selfSigned(t, "older", now.Add(time.Hour)))
	}
	if n := len(mergeRoots(current, many, now)); n != maxTrustRoots {
		t.Errorf("bundle holds %d roots, want at most %d", n, maxTrustRoots)
	}
}

func TestDeploymentAvailability(t *testing.T) {
	key := client.ObjectKey{Namespace: "knit-system", Name: "cp"}
	available := []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}
	created := metav1.ObjectMeta{CreationTimestamp: metav1.Now(), Generation: 2}
	tests := []struct {
		name string
		dep  appsv1.Deployment
		ok   bool
		msg  string
	}{
		{"missing", appsv1.Deployment{}, false, "Deployment knit-system/cp does not exist yet"},
		{"rolling out", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, AvailableReplicas: 2, Conditions: available}},
			false, "Deployment knit-system/cp has 2 of 2 replicas available; generation 2 is not rolled out yet"},
		{"no pods", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2}},
			false, "Deployment knit-system/cp has 0 of 2 replicas available"},
		{"available", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, AvailableReplicas: 1, Conditions: available}},
			true, "Deployment knit-system/cp has 1 of 2 replicas available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, msg := deploymentAvailability(&tt.dep, key)
			if ok != tt.ok || msg != tt.msg {
				t.Errorf("got (%v, %q), want (%v, %q)", ok, msg, tt.ok, tt.msg)
			}
		})
	}
}

func TestRevisionName(t *testing.T) {
	if got := RevisionName("default", "v0.1.0-rc.1"); got != "default-v0-1-0-rc-1" {
		t.Errorf("RevisionName = %q", got)
	}
}
