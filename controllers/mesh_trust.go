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
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// Names of the trust chain the operator bootstraps in the control-plane namespace when the Mesh
// names no issuer: a self-signed Issuer signs the root CA Certificate, whose Secret the operator
// copies into the one that backs the CA Issuer that signs serving and workload certificates
// (issuingCAName, mesh_signing.go).
const (
	selfSignedIssuerName = "knit-selfsigned"
	rootCAName           = "knit-root-ca" // Certificate and Secret
	caIssuerName         = "knit-ca"
	// TrustBundleName is the ConfigMap holding the trust roots (key ca.crt) in the control-plane
	// namespace and in every meshed namespace: the one the injected proxy mounts.
	TrustBundleName = injection.TrustBundleName
	TrustBundleKey  = injection.TrustBundleKey

	rootCADuration    = 365 * 24 * time.Hour
	rootCARenewBefore = 60 * 24 * time.Hour
	// maxTrustRoots bounds the bundle: the current root and those it replaced, while valid.
	maxTrustRoots = 4
)

// issuerFor returns the issuer that signs the mesh's certificates.
func issuerFor(mesh *meshv1.Mesh) meshv1.IssuerReference {
	if ref := mesh.Spec.Trust.IssuerRef; ref != nil {
		return *ref
	}
	return meshv1.IssuerReference{Name: caIssuerName, Kind: meshv1.IssuerKindIssuer, Group: cmapi.SchemeGroupVersion.Group}
}

// issuerState is what the operator learned about the issuer chain: whether it signs, and if not,
// the reason (one of knit's, chosen from cert-manager's conditions and the API's typed errors).
type issuerState struct {
	ready   bool
	status  metav1.ConditionStatus
	reason  string
	message string
}

func issuerOK(format string, args ...any) issuerState {
	return issuerState{ready: true, status: metav1.ConditionTrue, reason: meshv1.ReasonAsExpected, message: fmt.Sprintf(format, args...)}
}

func issuerNot(reason, format string, args ...any) issuerState {
	return issuerState{status: metav1.ConditionFalse, reason: reason, message: fmt.Sprintf(format, args...)}
}

// reconcileTrust makes sure the issuer chain exists and is Ready, and learns the trust roots.
func (r *MeshReconciler) reconcileTrust(ctx context.Context, st *meshState) {
	mesh := st.mesh
	var is issuerState
	var rootSecret client.ObjectKey
	ns := mesh.Spec.ControlPlane.Namespace
	if mesh.Spec.Trust.IssuerRef == nil {
		if err := r.bootstrapCA(ctx, mesh); err != nil {
			st.fail(err)
		}
		if err := r.syncIssuingCA(ctx, st); err != nil {
			st.fail(err)
		}
		is = r.bootstrapReady(ctx, ns)
		// The root that signs; a re-issued one that does not sign yet is st.rotation.next.
		rootSecret = client.ObjectKey{Namespace: ns, Name: issuingCAName}
	} else {
		is = r.userIssuerReady(ctx, mesh)
		// The user's issuer says nothing portable about its CA; the chain cert-manager returned
		// with the active revision's serving certificate (its ca.crt) does.
		rootSecret = client.ObjectKey{Namespace: ns, Name: controlPlaneName(&meshv1.MeshRevision{
			ObjectMeta: metav1.ObjectMeta{Name: RevisionName(mesh.Name, mesh.Spec.Version)}})}
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesReady, is.status, is.reason, "%s", is.message)

	if err := r.observeRoot(ctx, st, rootSecret); err != nil {
		st.fail(err)
	}
}

// bootstrapCA creates the self-signed root and the CA Issuer, owned by the Mesh.
func (r *MeshReconciler) bootstrapCA(ctx context.Context, mesh *meshv1.Mesh) error {
	ns := mesh.Spec.ControlPlane.Namespace
	labels := map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelComponent: "trust"}
	selfSigned := &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: selfSignedIssuerName, Namespace: ns}}
	root := &cmapi.Certificate{ObjectMeta: metav1.ObjectMeta{Name: rootCAName, Namespace: ns}}
	ca := &cmapi.Issuer{ObjectMeta: metav1.ObjectMeta{Name: caIssuerName, Namespace: ns}}
	for _, s := range []struct {
		obj  client.Object
		sync func()
	}{
		{selfSigned, func() {
			syncLabels(selfSigned, labels)
			syncTo(&selfSigned.Spec, cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}})
		}},
		{root, func() {
			syncLabels(root, labels)
			syncTo(&root.Spec, cmapi.CertificateSpec{
				IsCA:           true,
				CommonName:     "knit root CA " + mesh.Spec.Trust.TrustDomain,
				Subject:        &cmapi.X509Subject{Organizations: []string{"knit"}},
				SecretName:     rootCAName,
				SecretTemplate: &cmapi.CertificateSecretTemplate{Labels: labels},
				Duration:       &metav1.Duration{Duration: rootCADuration},
				RenewBefore:    &metav1.Duration{Duration: rootCARenewBefore},
				PrivateKey: &cmapi.CertificatePrivateKey{
					Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256, RotationPolicy: cmapi.RotationPolicyAlways,
				},
				Usages:    []cmapi.KeyUsage{cmapi.UsageCertSign, cmapi.UsageCRLSign, cmapi.UsageDigitalSignature},
				IssuerRef: cmmeta.IssuerReference{Name: selfSignedIssuerName, Kind: cmapi.IssuerKind, Group: cmapi.SchemeGroupVersion.Group},
			})
		}},
		{ca, func() {
			syncLabels(ca, labels)
			syncTo(&ca.Spec, cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: issuingCAName}}})
		}},
	} {
		if err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, s.obj, s.sync); err != nil {
			return err
		}
	}
	return nil
}

// bootstrapReady reports whether the bootstrapped chain is Ready, naming the first link that is not.
func (r *MeshReconciler) bootstrapReady(ctx context.Context, ns string) issuerState {
	for _, name := range []string{selfSignedIssuerName, caIssuerName} {
		if is := r.issuerReady(ctx, meshv1.IssuerReference{Name: name, Kind: meshv1.IssuerKindIssuer, Group: cmapi.SchemeGroupVersion.Group}, ns); !is.ready {
			return is
		}
	}
	var root cmapi.Certificate
	key := client.ObjectKey{Namespace: ns, Name: rootCAName}
	if err := r.Get(ctx, key, &root); err != nil {
		if apierrors.IsNotFound(err) {
			return issuerNot(meshv1.ReasonCertificateNotReady, "root CA Certificate %s does not exist yet", key)
		}
		return issuerNot(meshv1.ReasonReconcileFailed, "reading root CA Certificate %s: %v", key, err)
	}
	if ok, msg := certificateReady(&root); !ok {
		return issuerNot(meshv1.ReasonCertificateNotReady, "root CA Certificate %s is not Ready: %s", key, msg)
	}
	return issuerOK("Issuer %s/%s is Ready, signing with the root CA of Certificate %s (copied to Secret %s/%s once distributed)",
		ns, caIssuerName, key, ns, issuingCAName)
}

// userIssuerReady checks the issuer the Mesh names: the operator only reads it.
func (r *MeshReconciler) userIssuerReady(ctx context.Context, mesh *meshv1.Mesh) issuerState {
	ref := *mesh.Spec.Trust.IssuerRef
	if ref.Group != "" && ref.Group != cmapi.SchemeGroupVersion.Group {
		return issuerState{status: metav1.ConditionUnknown, reason: meshv1.ReasonExternalIssuer, message: fmt.Sprintf(
			"%s %s of group %s is an external issuer; knit does not read its readiness, the serving Certificate's status shows whether it signs",
			ref.Kind, ref.Name, ref.Group)}
	}
	is := r.issuerReady(ctx, ref, mesh.Spec.ControlPlane.Namespace)
	if is.ready {
		is.message += " (spec.trust.issuerRef)"
	} else {
		is.message += "; fix it or spec.trust.issuerRef"
	}
	return is
}

// issuerReady reads the Ready condition of an Issuer (in ns) or ClusterIssuer.
func (r *MeshReconciler) issuerReady(ctx context.Context, ref meshv1.IssuerReference, ns string) issuerState {
	var (
		obj  client.Object
		stat *cmapi.IssuerStatus
		what string
		key  client.ObjectKey
	)
	if ref.Kind == meshv1.IssuerKindClusterIssuer {
		ci := &cmapi.ClusterIssuer{}
		obj, stat, what, key = ci, &ci.Status, "ClusterIssuer "+ref.Name, client.ObjectKey{Name: ref.Name}
	} else {
		is := &cmapi.Issuer{}
		obj, stat, what, key = is, &is.Status, fmt.Sprintf("Issuer %s/%s", ns, ref.Name), client.ObjectKey{Namespace: ns, Name: ref.Name}
	}
	if err := r.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return issuerNot(meshv1.ReasonIssuerNotFound, "%s not found", what)
		}
		return issuerNot(meshv1.ReasonReconcileFailed, "reading %s: %v", what, err)
	}
	for _, c := range stat.Conditions {
		if c.Type == cmapi.IssuerConditionReady {
			if c.Status == cmmeta.ConditionTrue {
				return issuerOK("%s is Ready", what)
			}
			// cert-manager's own reason (e.g. ErrGetKeyPair) says what is wrong with it.
			return issuerNot(meshv1.ReasonIssuerNotReady, "%s is not Ready (cert-manager: %s): %s", what, c.Reason, c.Message)
		}
	}
	return issuerNot(meshv1.ReasonIssuerNotReady, "%s is not Ready: cert-manager has not reported on it yet", what)
}

// observeRoot reads the root that signs from a Secret (the issuing copy, or the serving
// certificate's with a user's issuer), records it in status, keeps the bundle (the next root of a
// pending rotation and the signing root first, then earlier roots still valid), and sets
// CertificatesHealthy from its expiry.
func (r *MeshReconciler) observeRoot(ctx context.Context, st *meshState, secretKey client.ObjectKey) error {
	mesh := st.mesh
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, secretKey, &secret)
	if apierrors.IsNotFound(err) {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionUnknown,
			meshv1.ReasonPending, "the trust root is not known until Secret %s exists", secretKey)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s: %w", secretKey, err)
	}
	// cert-manager puts the CA chain that signed the certificate in ca.crt; the trust root is its
	// self-signed CA. Never the leaf in tls.crt: trusting it would trust nothing else.
	chain := parseCertificates(secret.Data[cmmeta.TLSCAKey])
	root := selfSignedRoot(chain)
	if root == nil {
		what := "holds no CA certificate in ca.crt"
		if len(chain) > 0 {
			what = fmt.Sprintf("has %d CA certificate(s) in ca.crt but none is self-signed (an intermediate without its root)", len(chain))
		}
		msg := fmt.Sprintf("Secret %s %s: the issuer does not publish the root CA that proxies must trust, so no trust bundle is distributed; "+
			"use an issuer that returns its CA chain ending in its self-signed root (such as a cert-manager CA issuer whose Secret holds the root)", secretKey, what)
		// Meshed pods need the bundle to start: this is an outage, not a warning.
		for _, t := range []string{meshv1.ConditionCertificatesReady, meshv1.ConditionCertificatesHealthy} {
			conditions.Set(&mesh.Status.Conditions, mesh.Generation, t, metav1.ConditionFalse, meshv1.ReasonIssuerPublishesNoCA, "%s", msg)
		}
		return nil
	}
	previous, err := r.currentBundle(ctx, mesh.Spec.ControlPlane.Namespace)
	if err != nil {
		return err
	}
	current := []*x509.Certificate{root}
	if st.rotation != nil {
		current = []*x509.Certificate{st.rotation.next, root}
	}
	st.roots = mergeRoots(current, previous, time.Now())
	r.reportRoot(st, root, secretKey)
	return nil
}

// reportRoot records the signing root in status and sets CertificatesHealthy from its expiry.
func (r *MeshReconciler) reportRoot(st *meshState, root *x509.Certificate, secretKey client.ObjectKey) {
	mesh := st.mesh
	fingerprint := fingerprintOf(root)
	mesh.Status.Trust = &meshv1.TrustStatus{RootNotAfter: &metav1.Time{Time: root.NotAfter}, RootFingerprint: fingerprint}
	if time.Until(root.NotAfter) < r.ExpiryWarning {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionFalse,
			meshv1.ReasonCertificateExpiring,
			"trust root %q (Secret %s, SHA-256 %s) expires at %s, within the %s warning window: renew or replace it",
			root.Subject.CommonName, secretKey, fingerprint, root.NotAfter.UTC().Format(time.RFC3339), r.ExpiryWarning)
		return
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionTrue,
		meshv1.ReasonAsExpected, "trust root %q (Secret %s) is valid until %s",
		root.Subject.CommonName, secretKey, root.NotAfter.UTC().Format(time.RFC3339))
	st.requeueAt(root.NotAfter.Add(-r.ExpiryWarning))
}

// selfSignedRoot returns the self-signed certificate of a CA chain: the trust anchor.
func selfSignedRoot(chain []*x509.Certificate) *x509.Certificate {
	for _, c := range chain {
		if c.IsCA && bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// currentBundle returns the roots in the control-plane namespace's trust bundle.
func (r *MeshReconciler) currentBundle(ctx context.Context, ns string) ([]*x509.Certificate, error) {
	var cm corev1.ConfigMap
	err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: TrustBundleName}, &cm)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", ns, TrustBundleName, err)
	}
	return parseCertificates([]byte(cm.Data[TrustBundleKey])), nil
}

// mergeRoots puts the current roots first (the next root and the one that signs; never
// dropped), then earlier roots that are still valid, without repeats, so proxies trust both sides
// of a root rotation until the old root expires.
func mergeRoots(current []*x509.Certificate, previous []*x509.Certificate, now time.Time) [][]byte {
	var out [][]byte
	seen := map[string]bool{}
	for _, c := range current {
		if fp := fingerprintOf(c); !seen[fp] {
			seen[fp] = true
			out = append(out, encodePEM(c))
		}
	}
	for _, c := range previous {
		fp := fingerprintOf(c)
		if seen[fp] || now.After(c.NotAfter) || len(out) == maxTrustRoots {
			continue
		}
		seen[fp] = true
		out = append(out, encodePEM(c))
	}
	return out
}

func parseCertificates(data []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			certs = append(certs, c)
		}
	}
}

func encodePEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// fingerprintOf is the SHA-256 of the DER certificate, as openssl prints it (AB:CD:...).
func fingerprintOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}
