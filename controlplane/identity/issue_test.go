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
	"context"
	"fmt"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// knit approves only the request it created, still asking for exactly what it validated.
func TestApprovesOnlyTheRequestAsValidated(t *testing.T) {
	created := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{UID: "u1"},
		Spec: cmapi.CertificateRequestSpec{
			Request: []byte("csr"), Duration: &metav1.Duration{Duration: time.Hour}, Usages: workloadUsages,
			IssuerRef: cmmeta.IssuerReference{Name: "knit-ca", Kind: "Issuer", Group: "cert-manager.io"},
			Username:  "system:serviceaccount:knit-system:knit-controlplane-v0-1-0",
		},
	}
	want := created.Spec.DeepCopy()
	if err := sameRequest(created, created.DeepCopy(), want); err != nil {
		t.Fatalf("the request as created: %v", err)
	}
	for name, change := range map[string]func(*cmapi.CertificateRequest){
		"replaced":         func(cr *cmapi.CertificateRequest) { cr.UID = "u2" },
		"another creator":  func(cr *cmapi.CertificateRequest) { cr.Spec.Username = "mallory" },
		"another CSR":      func(cr *cmapi.CertificateRequest) { cr.Spec.Request = []byte("other") },
		"a CA":             func(cr *cmapi.CertificateRequest) { cr.Spec.IsCA = true },
		"another issuer":   func(cr *cmapi.CertificateRequest) { cr.Spec.IssuerRef.Name = "other" },
		"another duration": func(cr *cmapi.CertificateRequest) { cr.Spec.Duration = &metav1.Duration{Duration: 24 * time.Hour} },
		"no duration":      func(cr *cmapi.CertificateRequest) { cr.Spec.Duration = nil },
		"other usages":     func(cr *cmapi.CertificateRequest) { cr.Spec.Usages = []cmapi.KeyUsage{cmapi.UsageCertSign} },
	} {
		cur := created.DeepCopy()
		change(cur)
		if sameRequest(created, cur, want) == nil {
			t.Errorf("%s: approved", name)
		}
	}
}

// A request whose deadline ends while the API server is being asked is an issuance timeout (the
// issuer or approver did not answer in time), not an unavailable API server.
func TestDeadlineDuringAReadIsAnIssuanceTimeout(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := cmapi.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	// Every read is still in flight when the deadline comes, as client-go reports it then.
	slow := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, _ client.WithWatch, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
			<-ctx.Done()
			return fmt.Errorf("unexpected error when reading response body. Please retry. Original error: %w", ctx.Err())
		},
	}).Build()
	s := &Server{cfg: Config{Client: slow, Issuer: cmmeta.IssuerReference{Name: "knit-ca", Kind: "Issuer"}}}
	key := client.ObjectKey{Namespace: "knit-system", Name: "knit-workload-1"}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.waitIssued(ctx, key); ReasonOf(err) != ReasonIssuanceTimeout {
		t.Errorf("waiting for issuance: %v, want reason %s", err, ReasonIssuanceTimeout)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	created := &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := s.approve(ctx, created, &created.Spec, "spiffe://td/ns/a/sa/b"); ReasonOf(err) != "" {
		t.Errorf("approving: %v, want the deadline (no refusal reason), which issue reports as %s", err, ReasonIssuanceTimeout)
	}
}
