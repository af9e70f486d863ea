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
	"crypto/x509"
	"fmt"
	"maps"
	"time"

	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
)

// Signing lags distribution. The bootstrapped CA Issuer signs from issuingCAName, the operator's
// copy of the root CA Secret, and the copy moves to a re-issued root only once that root has been
// in every trust bundle for RootRotationHold: until then proxies that have not seen the new root
// yet would refuse a certificate it signed, while the old root is still valid and still trusted.
const (
	issuingCAName = "knit-issuing-ca"
	// The root waiting to sign and since when every trust bundle holds it, recorded on the
	// issuing Secret so the hold survives a restart of the operator.
	annotationNextRoot            = "knit.dev/next-root-fingerprint"
	annotationNextRootDistributed = "knit.dev/next-root-distributed-at"

	// DefaultRootRotationHold covers kubelet's propagation of a ConfigMap to mounted volumes: the
	// periodic pod sync (--sync-frequency, 1 min by default) plus its jitter and the ConfigMap
	// cache, then the proxy's 5 s check of the bundle file. Twice the sync period leaves margin.
	DefaultRootRotationHold = 2 * time.Minute
)

// issuingKeys are the keys of the root CA Secret the CA Issuer reads.
var issuingKeys = []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, cmmeta.TLSCAKey}

// rootRotation is a re-issued root that is (being) distributed but does not sign yet.
type rootRotation struct {
	next     *x509.Certificate
	nextData map[string][]byte // the root CA Secret's keys, to copy when the hold ends
	issuing  *corev1.Secret    // the live issuing Secret
	signing  *x509.Certificate // the root the issuing Secret holds
}

// syncIssuingCA keeps the issuing Secret a copy of the root CA Secret's current root. It copies at
// once when nothing signs yet (a new mesh, or one whose Issuer signed from the root CA Secret
// itself before this Secret existed); a different root is recorded in st.rotation for moveSigning,
// which copies it once it is distributed.
func (r *MeshReconciler) syncIssuingCA(ctx context.Context, st *meshState) error {
	ns := st.mesh.Spec.ControlPlane.Namespace
	rootKey := client.ObjectKey{Namespace: ns, Name: rootCAName}
	var root corev1.Secret
	if err := r.APIReader.Get(ctx, rootKey, &root); err != nil {
		// Not issued yet: observeRoot reports the missing trust root.
		return client.IgnoreNotFound(fmt.Errorf("reading Secret %s: %w", rootKey, err))
	}
	next := selfSignedRoot(parseCertificates(root.Data[cmmeta.TLSCAKey]))
	if next == nil || len(root.Data[corev1.TLSPrivateKeyKey]) == 0 {
		return nil // cert-manager has not finished writing it
	}
	data := map[string][]byte{}
	for _, k := range issuingKeys {
		data[k] = root.Data[k]
	}

	issuing := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: issuingCAName}}
	err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(issuing), issuing)
	switch {
	case apierrors.IsNotFound(err):
		log.FromContext(ctx).Info("nothing signs yet: the CA Issuer signs with the current root at once", "root", fingerprintOf(next))
		return r.writeIssuingCA(ctx, st.mesh, issuing, data)
	case err != nil:
		return fmt.Errorf("reading Secret %s: %w", client.ObjectKeyFromObject(issuing), err)
	case !metav1.IsControlledBy(issuing, st.mesh):
		return fmt.Errorf("issuing Secret %s: %w", client.ObjectKeyFromObject(issuing),
			&NameTakenError{Object: client.ObjectKeyFromObject(issuing), UID: issuing.UID})
	}
	signing := selfSignedRoot(parseCertificates(issuing.Data[cmmeta.TLSCAKey]))
	if signing != nil && fingerprintOf(signing) != fingerprintOf(next) {
		st.rotation = &rootRotation{next: next, nextData: data, issuing: issuing, signing: signing}
		return nil
	}
	// The same root (or none, which signs nothing): keep the copy faithful.
	return r.writeIssuingCA(ctx, st.mesh, issuing, data)
}

// writeIssuingCA makes the issuing Secret hold data and no pending rotation; it writes only
// when that changes something. Secrets are not cached: reads and writes go to the API server.
func (r *MeshReconciler) writeIssuingCA(ctx context.Context, mesh *meshv1.Mesh, s *corev1.Secret, data map[string][]byte) error {
	before := s.DeepCopy()
	syncLabels(s, map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelComponent: "trust"})
	delete(s.Annotations, annotationNextRoot)
	delete(s.Annotations, annotationNextRootDistributed)
	s.Type = corev1.SecretTypeTLS
	s.Data = maps.Clone(data)
	if err := controllerutil.SetControllerReference(mesh, s, r.Scheme()); err != nil {
		return err
	}
	key := client.ObjectKeyFromObject(s)
	if s.ResourceVersion == "" {
		if err := r.Create(ctx, s); err != nil {
			return fmt.Errorf("creating Secret %s: %w", key, err)
		}
		return nil
	}
	if equality.Semantic.DeepEqual(before, s) {
		return nil
	}
	if err := r.Update(ctx, s); err != nil {
		return fmt.Errorf("updating Secret %s: %w", key, err)
	}
	return nil
}

// moveSigning runs after the trust bundles are written: it starts the hold once every bundle
// holds the next root, and when the hold is over points signing at it.
func (r *MeshReconciler) moveSigning(ctx context.Context, st *meshState) {
	rot := st.rotation
	if rot == nil {
		return
	}
	ns := st.mesh.Spec.ControlPlane.Namespace
	nextFP := fingerprintOf(rot.next)
	since, started := distributedSince(rot.issuing, nextFP)
	if !started {
		if !st.bundlesDistributed {
			r.reportRotation(st, "root %s (Secret %s/%s) is not in every trust bundle yet; Issuer %s/%s signs with root %s until it has been there for %s",
				nextFP, ns, rootCAName, ns, caIssuerName, fingerprintOf(rot.signing), r.RootRotationHold)
			return
		}
		since = time.Now()
		if rot.issuing.Annotations == nil {
			rot.issuing.Annotations = map[string]string{}
		}
		rot.issuing.Annotations[annotationNextRoot] = nextFP
		rot.issuing.Annotations[annotationNextRootDistributed] = since.UTC().Format(time.RFC3339Nano)
		if err := r.Update(ctx, rot.issuing); err != nil {
			st.fail(fmt.Errorf("recording on Secret %s/%s when root %s reached every trust bundle: %w", ns, issuingCAName, nextFP, err))
			return
		}
	}
	moveAt := since.Add(r.RootRotationHold)
	if time.Now().Before(moveAt) {
		r.reportRotation(st, "root %s (Secret %s/%s) is in every trust bundle (ConfigMaps %s) since %s; Issuer %s/%s signs with it from %s, until then with root %s (Secret %s/%s)",
			nextFP, ns, rootCAName, TrustBundleName, since.UTC().Format(time.RFC3339), ns, caIssuerName,
			moveAt.UTC().Format(time.RFC3339), fingerprintOf(rot.signing), ns, issuingCAName)
		st.requeueAt(moveAt)
		return
	}
	if err := r.writeIssuingCA(ctx, st.mesh, rot.issuing, rot.nextData); err != nil {
		st.fail(err)
		return
	}
	st.rotation = nil
	if r.Recorder != nil {
		r.Recorder.Eventf(st.mesh, nil, corev1.EventTypeNormal, meshv1.ReasonSigningRootMoved, "MoveSigningRoot",
			"Issuer %s/%s signs with root %s from now on: it has been in every trust bundle since %s. Root %s, which signed until now, stays trusted until it expires at %s",
			ns, caIssuerName, nextFP, since.UTC().Format(time.RFC3339), fingerprintOf(rot.signing), rot.signing.NotAfter.UTC().Format(time.RFC3339))
	}
	r.reportRoot(st, rot.next, client.ObjectKeyFromObject(rot.issuing))
}

// distributedSince reads when every trust bundle came to hold the root fp, if it is the one
// recorded.
func distributedSince(issuing *corev1.Secret, fp string) (time.Time, bool) {
	if issuing.Annotations[annotationNextRoot] != fp {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, issuing.Annotations[annotationNextRootDistributed])
	return t, err == nil
}

// reportRotation says, while CertificatesHealthy has nothing worse to say, that signing waits.
func (r *MeshReconciler) reportRotation(st *meshState, format string, args ...any) {
	mesh := st.mesh
	if c := findCondition(mesh.Status.Conditions, meshv1.ConditionCertificatesHealthy); c == nil || c.Status != metav1.ConditionTrue {
		return
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy, metav1.ConditionTrue,
		meshv1.ReasonRootRotating, format, args...)
}
