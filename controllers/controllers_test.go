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
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
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
			got := commonNames(t, mergeRoots([]*x509.Certificate{current}, tt.previous, now))
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
	if n := len(mergeRoots([]*x509.Certificate{current}, many, now)); n != maxTrustRoots {
		t.Errorf("bundle holds %d roots, want at most %d", n, maxTrustRoots)
	}
}

// During a rotation the next root and the one that still signs are both kept, whatever the bundle
// held before, and an expired earlier root still goes.
func TestMergeRootsKeepsTheSigningRootBesideTheNextOne(t *testing.T) {
	now := time.Now()
	next := selfSigned(t, "next", now.Add(365*24*time.Hour))
	signing := selfSigned(t, "signing", now.Add(30*24*time.Hour))
	expired := selfSigned(t, "expired", now.Add(-time.Hour))
	var previous []*x509.Certificate
	for range 10 {
		previous = append(previous, selfSigned(t, "older", now.Add(time.Hour)))
	}
	got := commonNames(t, mergeRoots([]*x509.Certificate{next, signing}, append([]*x509.Certificate{expired, next}, previous...), now))
	if len(got) != maxTrustRoots || got[0] != "next" || got[1] != "signing" || slices.Contains(got, "expired") {
		t.Errorf("bundle = %v, want next, signing, then valid earlier roots up to %d", got, maxTrustRoots)
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
		{"rolling out is still available", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 1, AvailableReplicas: 2, Conditions: available}},
			true, "Deployment knit-system/cp has 2 of 2 replicas available; a rollout is in progress"},
		{"scaling up is still available", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, Conditions: available}},
			true, "Deployment knit-system/cp has 2 of 3 replicas available; a rollout is in progress"},
		{"no pods", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2}},
			false, "Deployment knit-system/cp has 0 of 2 replicas available; a rollout is in progress"},
		{"crash loop", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2}},
			false, "Deployment knit-system/cp has 0 of 2 replicas available"},
		{"available", appsv1.Deployment{ObjectMeta: created, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, Conditions: available}},
			true, "Deployment knit-system/cp has 2 of 2 replicas available"},
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

func TestSyncToRemovesWhatDesiredNoLongerHas(t *testing.T) {
	hook := func(name string) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{Name: name}
	}
	live := []admissionregistrationv1.MutatingWebhook{hook("rev"), hook("namespace"), hook("selector")}
	syncTo(&live, []admissionregistrationv1.MutatingWebhook{hook("rev")})
	if len(live) != 1 || live[0].Name != "rev" {
		t.Errorf("webhooks after sync = %v, want only rev", live)
	}

	args := []string{"--a", "--b"}
	syncTo(&args, []string{"--a"})
	if len(args) != 1 {
		t.Errorf("args after sync = %v, want [--a]", args)
	}

	// What the API server defaults (fields desired leaves empty) is still not drift.
	port := []corev1.ServicePort{{Name: "webhook", Port: 443, Protocol: corev1.ProtocolTCP}}
	before := port[0]
	syncTo(&port, []corev1.ServicePort{{Name: "webhook", Port: 443}})
	if port[0] != before {
		t.Errorf("a defaulted field counted as drift: %+v", port[0])
	}
}

func TestWebhookCABundleKeepsOldRootsUntilTheRolloutCompletes(t *testing.T) {
	now := time.Now()
	oldRoot, newRoot := selfSigned(t, "old", now.Add(time.Hour)), selfSigned(t, "new", now.Add(time.Hour))
	tests := []struct {
		name        string
		current     []byte
		live        []byte
		rolledOut   bool
		wantRootsCN []string
	}{
		{"first configuration", encodePEM(newRoot), nil, false, []string{"new"}},
		{"CA changed, pods not rolled yet", encodePEM(newRoot), encodePEM(oldRoot), false, []string{"new", "old"}},
		{"still rolling: not repeated", encodePEM(newRoot), append(encodePEM(newRoot), encodePEM(oldRoot)...), false, []string{"new", "old"}},
		{"rolled out: old root dropped", encodePEM(newRoot), append(encodePEM(newRoot), encodePEM(oldRoot)...), true, []string{"new"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := commonNames(t, [][]byte{webhookCABundle(tt.current, tt.live, tt.rolledOut)})
			if strings.Join(got, ",") != strings.Join(tt.wantRootsCN, ",") {
				t.Errorf("caBundle roots = %v, want %v", got, tt.wantRootsCN)
			}
		})
	}
}

func TestChooseActiveWaitsForTheNewRevisionToServe(t *testing.T) {
	rev := func(name string, serving bool) meshv1.MeshRevision {
		status := metav1.ConditionFalse
		if serving {
			status = metav1.ConditionTrue
		}
		r := meshv1.MeshRevision{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}}
		r.Status.ObservedGeneration = 1
		for _, t := range []string{meshv1.ConditionAvailable, meshv1.ConditionInjectionReady} {
			r.Status.Conditions = append(r.Status.Conditions, metav1.Condition{Type: t, Status: status, Reason: "R"})
		}
		return r
	}
	tests := []struct {
		name, current, want string
		revisions           []meshv1.MeshRevision
	}{
		{"first install", "", "v2", []meshv1.MeshRevision{rev("v2", false)}},
		{"new revision not serving", "v1", "v1", []meshv1.MeshRevision{rev("v1", true), rev("v2", false)}},
		{"new revision serving", "v1", "v2", []meshv1.MeshRevision{rev("v1", true), rev("v2", true)}},
		{"current revision gone", "v1", "v2", []meshv1.MeshRevision{rev("v2", false)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chooseActive(tt.current, "v2", tt.revisions); got != tt.want {
				t.Errorf("chooseActive = %s, want %s", got, tt.want)
			}
		})
	}
}
