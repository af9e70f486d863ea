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

package translate

import (
	"crypto/tls"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/internal/gateway"
)

// certificate is a PEM certificate chain and its private key, from a kubernetes.io/tls Secret.
type certificate struct{ chain, key string }

// objectKey names a namespaced object.
type objectKey struct{ namespace, name string }

// SecretRef is a Secret a knit Gateway's HTTPS listener names (namespace and name), whether or
// not a ReferenceGrant lets it: the Secrets the control plane needs to read.
type SecretRef = objectKey

// NewSecretRef names a Secret.
func NewSecretRef(namespace, name string) SecretRef { return objectKey{namespace, name} }

// Namespace of the object.
func (k objectKey) Namespace() string { return k.namespace }

// Name of the object.
func (k objectKey) Name() string { return k.name }

// ReferencedSecrets are the Secrets the HTTPS listeners of gateways name in certificateRefs
// (group core, kind Secret): the only Secrets the translation reads.
func ReferencedSecrets(gateways []gwv1.Gateway) map[SecretRef]bool {
	out := map[SecretRef]bool{}
	for i := range gateways {
		gw := &gateways[i]
		for _, l := range gw.Spec.Listeners {
			if l.Protocol != gwv1.HTTPSProtocolType || !gateway.Terminates(l) {
				continue
			}
			for _, ref := range l.TLS.CertificateRefs {
				if isSecret(ref) {
					out[objectKey{refNamespace(ref, gw.Namespace), string(ref.Name)}] = true
				}
			}
		}
	}
	return out
}

// certificateJudge judges the certificateRefs of one Gateway's HTTPS listeners and keeps, per
// listener (by name), the verdict and the certificates of those that resolve.
type certificateJudge struct {
	gw       *gwv1.Gateway
	secrets  map[objectKey]*corev1.Secret
	grants   grants
	verdicts map[string]gateway.CertificateVerdict
	certs    map[string][]certificate
}

func newCertificateJudge(gw *gwv1.Gateway, secrets map[objectKey]*corev1.Secret, g grants) *certificateJudge {
	return &certificateJudge{gw: gw, secrets: secrets, grants: g, verdicts: map[string]gateway.CertificateVerdict{}, certs: map[string][]certificate{}}
}

// check is a gateway.CertificateCheck: every certificateRef must name a Secret the Gateway may
// read (its own namespace, or another whose ReferenceGrant allows it) of type kubernetes.io/tls
// holding a PEM certificate chain and its key.
func (j *certificateJudge) check(l gwv1.Listener) *gateway.ListenerProblem {
	var certs []certificate
	for i, ref := range l.TLS.CertificateRefs {
		c, reason, msg := j.resolve(ref)
		if reason != "" {
			v := gateway.CertificateVerdict{Reason: reason, Message: fmt.Sprintf("tls.certificateRefs[%d]: %s", i, msg)}
			j.verdicts[string(l.Name)] = v
			return v.Problem()
		}
		certs = append(certs, c)
	}
	j.verdicts[string(l.Name)] = gateway.CertificateVerdict{Reason: gwv1.ListenerReasonResolvedRefs, Message: fmt.Sprintf("%d certificate(s) loaded", len(certs))}
	j.certs[string(l.Name)] = certs
	return nil
}

func (j *certificateJudge) resolve(ref gwv1.SecretObjectReference) (certificate, gwv1.ListenerConditionReason, string) {
	if !isSecret(ref) {
		return certificate{}, gwv1.ListenerReasonInvalidCertificateRef,
			fmt.Sprintf("group %q kind %q is not supported; only core Secrets (group \"\", kind Secret) are", groupOf(ref), kindOf(ref))
	}
	ns, name := refNamespace(ref, j.gw.Namespace), string(ref.Name)
	if ns != j.gw.Namespace && !j.grants.allowSecret(j.gw.Namespace, ns, name) {
		return certificate{}, gwv1.ListenerReasonRefNotPermitted,
			fmt.Sprintf("Secret %s/%s is in another namespace and no ReferenceGrant there lets Gateways of namespace %s refer to it", ns, name, j.gw.Namespace)
	}
	s := j.secrets[objectKey{ns, name}]
	if s == nil || s.Type != corev1.SecretTypeTLS {
		return certificate{}, gwv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("no Secret %s/%s of type %s exists", ns, name, corev1.SecretTypeTLS)
	}
	chain, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if _, err := tls.X509KeyPair(chain, key); err != nil {
		return certificate{}, gwv1.ListenerReasonInvalidCertificateRef,
			fmt.Sprintf("Secret %s/%s: %s and %s are not a PEM certificate chain and its private key: %v", ns, name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	}
	return certificate{chain: string(chain), key: string(key)}, "", ""
}

func isSecret(ref gwv1.SecretObjectReference) bool {
	g := groupOf(ref)
	return (g == "" || g == "core") && kindOf(ref) == "Secret"
}

func groupOf(ref gwv1.SecretObjectReference) string {
	if ref.Group == nil {
		return ""
	}
	return string(*ref.Group)
}

func kindOf(ref gwv1.SecretObjectReference) string {
	if ref.Kind == nil {
		return "Secret"
	}
	return string(*ref.Kind)
}

func refNamespace(ref gwv1.SecretObjectReference, gatewayNamespace string) string {
	if ref.Namespace == nil || *ref.Namespace == "" {
		return gatewayNamespace
	}
	return string(*ref.Namespace)
}
