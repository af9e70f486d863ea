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
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"google.golang.org/grpc/codes"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels and annotations on the CertificateRequests the server creates: approver-policy rules
// and people can select them, and knit's approver recognises its own.
const (
	LabelWorkloadCertificate = "knit.dev/workload-certificate"
	AnnotationIdentity       = "knit.dev/identity"
	AnnotationPod            = "knit.dev/pod"
	// ApprovedReason is the reason of the Approved condition knit's approver sets.
	ApprovedReason = "knit.dev"
)

// usages of every workload certificate: a sidecar is a TLS server and a client.
var workloadUsages = []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageKeyEncipherment, cmapi.UsageServerAuth, cmapi.UsageClientAuth}

// issue has cert-manager sign csrDER for w through a CertificateRequest, and deletes the
// request afterwards whatever happened.
func (s *Server) issue(ctx context.Context, w Workload, id string, csrDER []byte) ([]byte, error) {
	cr := &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "knit-workload-",
			Namespace:    s.cfg.Namespace,
			Labels:       map[string]string{LabelWorkloadCertificate: "true", "app.kubernetes.io/managed-by": "knit"},
			Annotations:  map[string]string{AnnotationIdentity: id, AnnotationPod: w.Namespace + "/" + w.Pod},
		},
		Spec: cmapi.CertificateRequestSpec{
			Request:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
			Duration:  &metav1.Duration{Duration: s.cfg.Duration},
			Usages:    workloadUsages,
			IsCA:      false,
			IssuerRef: s.cfg.Issuer,
		},
	}
	want := cr.Spec.DeepCopy()
	if err := s.cfg.Client.Create(ctx, cr); err != nil {
		return nil, refuse(ReasonAPIUnavailable, codes.Unavailable, "creating a CertificateRequest: %v", err)
	}
	defer s.deleteRequest(cr)

	if s.cfg.Approve {
		if err := s.approve(ctx, cr, want, id); err != nil {
			if ReasonOf(err) == "" {
				err = refuse(ReasonIssuanceTimeout, codes.DeadlineExceeded, "approving CertificateRequest %s/%s: %v", cr.Namespace, cr.Name, err)
			}
			return nil, err
		}
	}
	done, err := s.waitIssued(ctx, client.ObjectKeyFromObject(cr))
	if err != nil {
		return nil, err
	}
	return done.Status.Certificate, nil
}

// approve marks the request knit just created as approved, after reading it back and checking
// it is still the one knit created (same UID, and the creator cert-manager's webhook recorded)
// asking for exactly what was validated. A request already decided (cert-manager's default approver, approver-policy) is
// left as it is.
func (s *Server) approve(ctx context.Context, created *cmapi.CertificateRequest, want *cmapi.CertificateRequestSpec, id string) error {
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var cur cmapi.CertificateRequest
		if err := s.cfg.Client.Get(ctx, client.ObjectKeyFromObject(created), &cur); err != nil {
			return false, apiError(ctx, err, "reading CertificateRequest %s", created.Name)
		}
		if apiutil.CertificateRequestIsApproved(&cur) || apiutil.CertificateRequestIsDenied(&cur) {
			return true, nil
		}
		if err := sameRequest(created, &cur, want); err != nil {
			return false, refuse(ReasonIssuanceFailed, codes.Internal, "not approving CertificateRequest %s/%s: %v", cur.Namespace, cur.Name, err)
		}
		apiutil.SetCertificateRequestCondition(&cur, cmapi.CertificateRequestConditionApproved, cmmeta.ConditionTrue, ApprovedReason,
			"knit verified the workload's token and that the CSR asks for exactly "+id)
		err := s.cfg.Client.Status().Update(ctx, &cur)
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsConflict(err):
			return false, nil // someone else decided or cert-manager wrote status: read again
		default:
			return false, apiError(ctx, err, "approving CertificateRequest %s", cur.Name)
		}
	})
}

// apiError refuses for an API server error, unless the request's deadline ended the call: then
// it returns the context's error, which the caller reports as the issuance timeout it is.
func apiError(ctx context.Context, err error, format string, args ...any) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return refuse(ReasonAPIUnavailable, codes.Unavailable, format+": %v", append(args, err)...)
}

// sameRequest says whether cur is still the request knit created with spec want.
func sameRequest(created, cur *cmapi.CertificateRequest, want *cmapi.CertificateRequestSpec) error {
	switch {
	case cur.UID != created.UID:
		return errors.New("it was replaced")
	case cur.Spec.Username != created.Spec.Username:
		return fmt.Errorf("it was created by %q", cur.Spec.Username)
	case !bytes.Equal(cur.Spec.Request, want.Request):
		return errors.New("its CSR differs from the one validated")
	case cur.Spec.IsCA || cur.Spec.IssuerRef != want.IssuerRef:
		return errors.New("it asks for another issuer or a CA")
	case cur.Spec.Duration == nil || cur.Spec.Duration.Duration != want.Duration.Duration:
		return errors.New("it asks for another duration")
	case !slices.Equal(cur.Spec.Usages, want.Usages):
		return errors.New("it asks for other usages")
	}
	return nil
}

// waitIssued polls the request until it holds a certificate, fails or is denied, or ctx ends.
func (s *Server) waitIssued(ctx context.Context, key client.ObjectKey) (*cmapi.CertificateRequest, error) {
	var cr cmapi.CertificateRequest
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := s.cfg.Client.Get(ctx, key, &cr); err != nil {
			return false, apiError(ctx, err, "reading CertificateRequest %s", key.Name)
		}
		if apiutil.CertificateRequestIsDenied(&cr) {
			c := apiutil.GetCertificateRequestCondition(&cr, cmapi.CertificateRequestConditionDenied)
			return false, refuse(ReasonIssuanceFailed, codes.PermissionDenied, "CertificateRequest %s was denied (%s): %s", key.Name, c.Reason, c.Message)
		}
		ready := apiutil.GetCertificateRequestCondition(&cr, cmapi.CertificateRequestConditionReady)
		if ready != nil && ready.Reason == cmapi.CertificateRequestReasonFailed {
			return false, refuse(ReasonIssuanceFailed, codes.Unavailable, "cert-manager failed CertificateRequest %s: %s", key.Name, ready.Message)
		}
		return len(cr.Status.Certificate) > 0, nil
	})
	if ReasonOf(err) != "" {
		return nil, err
	}
	if err != nil {
		return nil, refuse(ReasonIssuanceTimeout, codes.DeadlineExceeded,
			"cert-manager did not sign CertificateRequest %s/%s within the deadline; is the issuer %s %s ready and the request approved?",
			key.Namespace, key.Name, s.cfg.Issuer.Kind, s.cfg.Issuer.Name)
	}
	return &cr, nil
}

// deleteRequest removes a request once answered; it runs with its own deadline, so a request
// that timed out is removed too.
func (s *Server) deleteRequest(cr *cmapi.CertificateRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Client.Delete(ctx, cr); client.IgnoreNotFound(err) != nil {
		s.cfg.Log.Error(err, "deleting CertificateRequest", "name", cr.Name, "namespace", cr.Namespace)
	}
}

// checkIssued refuses a signed chain whose leaf is not for id and the CSR's key, or is a CA.
func checkIssued(chainPEM []byte, csr *x509.CertificateRequest, id string) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, refuse(ReasonIssuedCertMismatch, codes.Internal, "the issuer returned an unreadable certificate: %v", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, refuse(ReasonIssuedCertMismatch, codes.Internal, "the issuer returned no certificate")
	}
	leaf := chain[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(x crypto.PublicKey) bool })
	switch {
	case !ok || !pub.Equal(csr.PublicKey):
		return nil, refuse(ReasonIssuedCertMismatch, codes.Internal, "the issued certificate is not for the CSR's key")
	case len(leaf.URIs) != 1 || leaf.URIs[0].String() != id || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0:
		return nil, refuse(ReasonIssuedCertMismatch, codes.Internal, "the issued certificate names %v %v, not %s alone", leaf.URIs, leaf.DNSNames, id)
	case leaf.IsCA:
		return nil, refuse(ReasonIssuedCertMismatch, codes.Internal, "the issuer returned a CA certificate")
	}
	return chain, nil
}
