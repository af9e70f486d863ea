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
)

// Names of the trust chain the operator bootstraps in the control-plane namespace when the Mesh
// names no issuer: a self-signed Issuer signs the root CA Certificate, whose Secret backs the CA
// Issuer that signs serving and workload certificates.
const (
	selfSignedIssuerName = "knit-selfsigned"
	rootCAName           = "knit-root-ca" // Certificate and Secret
	caIssuerName         = "knit-ca"
	// TrustBundleName is the ConfigMap holding the trust roots (key ca.crt) in the control-plane
	// namespace and in every meshed namespace.
	TrustBundleName = "knit-trust-bundle"
	TrustBundleKey  = "ca.crt"

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

// reconcileTrust makes sure the issuer chain exists and is Ready, and learns the trust roots.
func (r *MeshReconciler) reconcileTrust(ctx context.Context, st *meshState) {
	mesh := st.mesh
	var ready bool
	var msg string
	var rootSecret client.ObjectKey
	ns := mesh.Spec.ControlPlane.Namespace
	if mesh.Spec.Trust.IssuerRef == nil {
		if err := r.bootstrapCA(ctx, mesh); err != nil {
			st.fail(err)
		}
		ready, msg = r.bootstrapReady(ctx, ns)
		rootSecret = client.ObjectKey{Namespace: ns, Name: rootCAName}
	} else {
		ready, msg = r.userIssuerReady(ctx, mesh)
		// The user's issuer says nothing portable about its CA; the chain cert-manager returned
		// with the active revision's serving certificate does.
		rootSecret = client.ObjectKey{Namespace: ns, Name: controlPlaneName(&meshv1.MeshRevision{
			ObjectMeta: metav1.ObjectMeta{Name: RevisionName(mesh.Name, mesh.Spec.Version)}})}
	}
	reason := meshv1.ReasonAsExpected
	status := metav1.ConditionTrue
	switch {
	case ready:
	case strings.Contains(msg, "not found"):
		status, reason = metav1.ConditionFalse, meshv1.ReasonIssuerNotFound
	case strings.HasPrefix(msg, "external:"):
		status, reason, msg = metav1.ConditionUnknown, meshv1.ReasonExternalIssuer, strings.TrimPrefix(msg, "external:")
	default:
		status, reason = metav1.ConditionFalse, meshv1.ReasonIssuerNotReady
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesReady, status, reason, "%s", msg)

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
			syncTo(&ca.Spec, cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: rootCAName}}})
		}},
	} {
		if err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, s.obj, s.sync); err != nil {
			return err
		}
	}
	return nil
}

// bootstrapReady reports whether the bootstrapped chain is Ready, naming the first link that is not.
func (r *MeshReconciler) bootstrapReady(ctx context.Context, ns string) (bool, string) {
	for _, name := range []string{selfSignedIssuerName, caIssuerName} {
		if ok, msg := r.issuerReady(ctx, meshv1.IssuerReference{Name: name, Kind: meshv1.IssuerKindIssuer, Group: cmapi.SchemeGroupVersion.Group}, ns); !ok {
			return false, msg
		}
	}
	var root cmapi.Certificate
	key := client.ObjectKey{Namespace: ns, Name: rootCAName}
	if err := r.Get(ctx, key, &root); err != nil {
		return false, fmt.Sprintf("root CA Certificate %s: %v", key, err)
	}
	if ok, msg := certificateReady(&root); !ok {
		return false, fmt.Sprintf("root CA Certificate %s is not Ready: %s", key, msg)
	}
	return true, fmt.Sprintf("Issuer %s/%s is Ready, signing with the root CA of Certificate %s", ns, caIssuerName, key)
}

// userIssuerReady checks the issuer the Mesh names: the operator only reads it.
func (r *MeshReconciler) userIssuerReady(ctx context.Context, mesh *meshv1.Mesh) (bool, string) {
	ref := *mesh.Spec.Trust.IssuerRef
	if ref.Group != "" && ref.Group != cmapi.SchemeGroupVersion.Group {
		return false, fmt.Sprintf("external:%s %s of group %s is an external issuer; knit does not read its readiness, the serving Certificate's status shows whether it signs", ref.Kind, ref.Name, ref.Group)
	}
	ok, msg := r.issuerReady(ctx, ref, mesh.Spec.ControlPlane.Namespace)
	if ok {
		return true, msg + " (spec.trust.issuerRef)"
	}
	return false, msg + "; fix it or spec.trust.issuerRef"
}

// issuerReady reads the Ready condition of an Issuer (in ns) or ClusterIssuer.
func (r *MeshReconciler) issuerReady(ctx context.Context, ref meshv1.IssuerReference, ns string) (bool, string) {
	var (
		stat *cmapi.IssuerStatus
		what string
	)
	if ref.Kind == meshv1.IssuerKindClusterIssuer {
		ci := &cmapi.ClusterIssuer{}
		stat, what = &ci.Status, "ClusterIssuer "+ref.Name
		if err := r.Get(ctx, client.ObjectKey{Name: ref.Name}, ci); err != nil {
			return false, describeGetError(what, err)
		}
	} else {
		is := &cmapi.Issuer{}
		stat, what = &is.Status, fmt.Sprintf("Issuer %s/%s", ns, ref.Name)
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: ref.Name}, is); err != nil {
			return false, describeGetError(what, err)
		}
	}
	for _, c := range stat.Conditions {
		if c.Type == cmapi.IssuerConditionReady {
			if c.Status == cmmeta.ConditionTrue {
				return true, what + " is Ready"
			}
			return false, fmt.Sprintf("%s is not Ready: %s", what, c.Message)
		}
	}
	return false, what + " is not Ready: cert-manager has not reported on it yet"
}

func describeGetError(what string, err error) string {
	if apierrors.IsNotFound(err) {
		return what + " not found"
	}
	return fmt.Sprintf("reading %s: %v", what, err)
}

// observeRoot reads the current trust root from a cert-manager Secret, records it in status,
// keeps the bundle (current root first, then earlier roots still valid), and sets
// CertificatesHealthy from its expiry.
func (r *MeshReconciler) observeRoot(ctx context.Context, st *meshState, secretKey client.ObjectKey) error {
	mesh := st.mesh
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, secretKey, &secret)
	if apierrors.IsNotFound(err) {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionUnknown,
			meshv1.ReasonPending, "the trust root is not known until cert-manager writes Secret %s", secretKey)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Secret %s: %w", secretKey, err)
	}
	rootPEM := secret.Data[cmmeta.TLSCAKey]
	if secretKey.Name == rootCAName || len(rootPEM) == 0 {
		rootPEM = secret.Data[corev1.TLSCertKey] // the self-signed root is its own certificate
	}
	roots := parseCertificates(rootPEM)
	if len(roots) == 0 {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionFalse,
			meshv1.ReasonCertificateNotReady, "Secret %s holds no PEM certificate", secretKey)
		return nil
	}
	root := roots[len(roots)-1] // the last certificate of a chain is the anchor
	fingerprint := fingerprintOf(root)
	mesh.Status.Trust = &meshv1.TrustStatus{RootNotAfter: &metav1.Time{Time: root.NotAfter}, RootFingerprint: fingerprint}

	previous, err := r.currentBundle(ctx, mesh.Spec.ControlPlane.Namespace)
	if err != nil {
		return err
	}
	st.roots = mergeRoots(root, previous, time.Now())

	if time.Until(root.NotAfter) < r.ExpiryWarning {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionFalse,
			meshv1.ReasonCertificateExpiring,
			"trust root %q (Secret %s, SHA-256 %s) expires at %s, within the %s warning window: renew or replace it",
			root.Subject.CommonName, secretKey, fingerprint, root.NotAfter.UTC().Format(time.RFC3339), r.ExpiryWarning)
		return nil
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionTrue,
		meshv1.ReasonAsExpected, "trust root %q (Secret %s) is valid until %s",
		root.Subject.CommonName, secretKey, root.NotAfter.UTC().Format(time.RFC3339))
	st.requeueAt(root.NotAfter.Add(-r.ExpiryWarning))
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

// mergeRoots puts current first, then earlier roots that are still valid, without repeats, so
// proxies trust both sides of a root rotation until the old root expires.
func mergeRoots(current *x509.Certificate, previous []*x509.Certificate, now time.Time) [][]byte {
	out := [][]byte{encodePEM(current)}
	seen := map[string]bool{fingerprintOf(current): true}
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
