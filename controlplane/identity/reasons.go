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

// Package identity is the control plane's certificate authority front: a proxy sends a CSR for
// a key it generated in memory with its projected ServiceAccount token; the server checks the
// token (TokenReview, bound pod) and that the CSR asks for exactly that workload's SPIFFE ID,
// then has cert-manager sign it through a CertificateRequest against the mesh's issuer. It
// speaks Istio's CA API (istio.v1.auth.IstioCertificateService/CreateCertificate), so
// istio-csr-style clients work unchanged.
package identity

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reason names why a request was refused: the label of the refusal counter and the start of
// the gRPC status message.
type Reason string

const (
	ReasonTooLarge           Reason = "request_too_large"
	ReasonOverloaded         Reason = "too_many_concurrent_requests"
	ReasonRateLimited        Reason = "rate_limited"
	ReasonNoToken            Reason = "no_token"
	ReasonMalformedToken     Reason = "malformed_token"
	ReasonTokenExpired       Reason = "token_expired"
	ReasonTokenLifetime      Reason = "token_lifetime_too_long"
	ReasonWrongAudience      Reason = "wrong_audience"
	ReasonTokenRejected      Reason = "token_rejected"
	ReasonNotPodBound        Reason = "token_not_bound_to_a_pod"
	ReasonUnknownPod         Reason = "unknown_pod"
	ReasonPodTerminating     Reason = "pod_terminating"
	ReasonServiceAccount     Reason = "service_account_mismatch"
	ReasonMalformedCSR       Reason = "malformed_csr"
	ReasonKeyType            Reason = "key_type_not_permitted"
	ReasonCSRSignature       Reason = "bad_csr_signature"
	ReasonIdentityMismatch   Reason = "san_mismatch"
	ReasonForbiddenName      Reason = "forbidden_name"
	ReasonIssuanceFailed     Reason = "issuance_failed"
	ReasonIssuanceTimeout    Reason = "issuance_timeout"
	ReasonTrustBundle        Reason = "trust_bundle_unavailable"
	ReasonAPIUnavailable     Reason = "api_unavailable"
	ReasonIssuedCertMismatch Reason = "issued_certificate_mismatch"
)

// refusal is a request the server turns down, with the gRPC code the client sees.
type refusal struct {
	reason Reason
	code   codes.Code
	detail string
}

func (r *refusal) Error() string { return string(r.reason) + ": " + r.detail }

// GRPCStatus makes a refusal its own gRPC status: "<reason>: <detail>".
func (r *refusal) GRPCStatus() *status.Status { return status.New(r.code, r.Error()) }

func refuse(reason Reason, code codes.Code, format string, args ...any) error {
	return &refusal{reason: reason, code: code, detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of a refusal, or "" for another error.
func ReasonOf(err error) Reason {
	var r *refusal
	if errors.As(err, &r) {
		return r.reason
	}
	return ""
}
