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

package gateway

import (
	"encoding/json"
	"fmt"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// AnnotationCertificates carries the control plane's verdict on a Gateway's certificateRefs to
// the operator, which writes the Gateway's status. Only the control plane reads Secrets (the
// operator never reads them outside its own namespace), so it judges them and records the
// outcome here, on the Gateway itself: the operator is told of the change as of any annotation
// change and stays the one writer of the Gateway's status.
const AnnotationCertificates = "gateway.knit.dev/certificate-refs"

// CertificateVerdicts is the value of AnnotationCertificates: for the Gateway generation the
// control plane judged, per HTTPS listener (by name), whether its certificateRefs resolve.
type CertificateVerdicts struct {
	Generation int64                         `json:"generation"`
	Listeners  map[string]CertificateVerdict `json:"listeners"`
}

// CertificateVerdict is one listener's: Reason ResolvedRefs, or InvalidCertificateRef or
// RefNotPermitted with a Message that names the reference.
type CertificateVerdict struct {
	Reason  gatewayv1.ListenerConditionReason `json:"reason"`
	Message string                            `json:"message,omitempty"`
}

// Problem is the listener problem of a verdict; nil when the references resolve.
func (v CertificateVerdict) Problem() *ListenerProblem {
	if v.Reason == gatewayv1.ListenerReasonResolvedRefs {
		return nil
	}
	return &ListenerProblem{Condition: gatewayv1.ListenerConditionResolvedRefs, Reason: v.Reason, Message: v.Message}
}

// Encode is the annotation's value.
func (v CertificateVerdicts) Encode() string {
	b, _ := json.Marshal(v) // strings and ints only: cannot fail
	return string(b)
}

// CertificatesPending is the problem of an HTTPS listener whose certificates the control plane
// has not judged yet (for this generation of the Gateway): not programmed, nothing else known.
func CertificatesPending(message string) *ListenerProblem {
	return &ListenerProblem{Condition: gatewayv1.ListenerConditionProgrammed, Reason: gatewayv1.ListenerReasonPending, Message: message}
}

// CertificatesFromAnnotation is the operator's CertificateCheck: the control plane's verdict in
// gw's AnnotationCertificates when it is for gw's generation, else pending.
func CertificatesFromAnnotation(gw *gatewayv1.Gateway) CertificateCheck {
	var v CertificateVerdicts
	raw, ok := gw.Annotations[AnnotationCertificates]
	err := json.Unmarshal([]byte(raw), &v)
	return func(l gatewayv1.Listener) *ListenerProblem {
		switch {
		case !ok:
			return CertificatesPending("waiting for the mesh's control plane to read the certificateRefs")
		case err != nil:
			return CertificatesPending(fmt.Sprintf("annotation %s is not readable (%v); the control plane rewrites it", AnnotationCertificates, err))
		case v.Generation != gw.Generation:
			return CertificatesPending(fmt.Sprintf("waiting for the mesh's control plane to read the certificateRefs of generation %d", gw.Generation))
		}
		verdict, found := v.Listeners[string(l.Name)]
		if !found {
			return CertificatesPending("waiting for the mesh's control plane to read the certificateRefs")
		}
		return verdict.Problem()
	}
}
