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
	"fmt"
	"slices"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// MeshFinalizer holds a deleted Mesh until the webhooks are gone and the control-plane namespace
// is dealt with. Everything else goes by owner references (kube-controller-manager's garbage
// collector): the MeshRevisions, their ClusterRoles, bindings and webhook configurations, the
// cert-manager objects and the trust bundles.
const MeshFinalizer = "mesh.knit.dev/cleanup"

// AnnotationCreatedBy on a namespace says the operator created it: only such a namespace may be
// deleted with the Mesh.
const AnnotationCreatedBy = "mesh.knit.dev/created-by"

// createdByOperator is the value of AnnotationCreatedBy.
const createdByOperator = "knit-operator"

// finalize runs when the Mesh is being deleted. First the injection webhooks go, so no pod
// creation is sent to a control plane that is being torn down (with failurePolicy Fail it would
// be refused); then the control-plane namespace is deleted if the operator created it and it
// holds nothing else; then the finalizer is removed and the garbage collector does the rest.
func (r *MeshReconciler) finalize(ctx context.Context, mesh *meshv1.Mesh) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(mesh, MeshFinalizer) {
		return ctrl.Result{}, nil
	}
	remaining, err := r.deleteWebhooks(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	if remaining > 0 {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err := r.releaseNamespace(ctx, mesh); err != nil {
		return ctrl.Result{}, err
	}
	patch := client.MergeFrom(mesh.DeepCopy())
	controllerutil.RemoveFinalizer(mesh, MeshFinalizer)
	if err := r.Patch(ctx, mesh, patch); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("removing finalizer of Mesh %s: %w", mesh.Name, err)
	}
	return ctrl.Result{}, nil
}

// addFinalizer makes sure a live Mesh carries the finalizer.
func (r *MeshReconciler) addFinalizer(ctx context.Context, mesh *meshv1.Mesh) error {
	if controllerutil.ContainsFinalizer(mesh, MeshFinalizer) {
		return nil
	}
	patch := client.MergeFrom(mesh.DeepCopy())
	controllerutil.AddFinalizer(mesh, MeshFinalizer)
	if err := r.Patch(ctx, mesh, patch); err != nil {
		return fmt.Errorf("adding finalizer to Mesh %s: %w", mesh.Name, err)
	}
	return nil
}

// deleteWebhooks deletes every injection webhook configuration the operator made and returns
// how many were still there, read from the API server rather than the cache.
func (r *MeshReconciler) deleteWebhooks(ctx context.Context) (int, error) {
	var list admissionregistrationv1.MutatingWebhookConfigurationList
	if err := r.APIReader.List(ctx, &list, client.MatchingLabels{meshv1.LabelPartOf: meshv1.PartOfValue}); err != nil {
		return 0, fmt.Errorf("listing MutatingWebhookConfigurations: %w", err)
	}
	for i := range list.Items {
		mwc := &list.Items[i]
		if err := r.Delete(ctx, mwc); client.IgnoreNotFound(err) != nil {
			return 0, fmt.Errorf("deleting MutatingWebhookConfiguration %s: %w", mwc.Name, err)
		}
		log.FromContext(ctx).Info("deleted injection webhook before the Mesh", "object", mwc.Name)
	}
	return len(list.Items), nil
}

// releaseNamespace deletes the control-plane namespace when the operator created it and it holds
// nothing but knit's objects; otherwise it leaves the namespace, and says why in an event.
func (r *MeshReconciler) releaseNamespace(ctx context.Context, mesh *meshv1.Mesh) error {
	name := mesh.Spec.ControlPlane.Namespace
	var ns corev1.Namespace
	if err := r.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ns.Annotations[AnnotationCreatedBy] != createdByOperator || !ns.DeletionTimestamp.IsZero() {
		return nil
	}
	foreign, err := r.foreignObjects(ctx, name)
	if err != nil {
		return err
	}
	if len(foreign) > 0 {
		r.event(mesh, corev1.EventTypeNormal, "NamespaceKept",
			"Namespace %s stays: it holds objects knit did not make (%s)", name, strings.Join(foreign, ", "))
		return nil
	}
	if err := r.Delete(ctx, &ns); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting Namespace %s: %w", name, err)
	}
	log.FromContext(ctx).Info("deleted the control-plane namespace the operator created", "namespace", name)
	return nil
}

// foreignObjects names the objects in ns that knit did not make, among the kinds a person is
// likely to keep there: anything without knit's part-of label, except what Kubernetes puts in
// every namespace and what cert-manager derives from knit's Certificates.
func (r *MeshReconciler) foreignObjects(ctx context.Context, ns string) ([]string, error) {
	kinds := []schema.GroupVersionKind{
		// Certificates first: what cert-manager derives from knit's Certificates (requests,
		// temporary private-key Secrets) is owned by them.
		cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateKind),
		corev1.SchemeGroupVersion.WithKind("Secret"),
		corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
		corev1.SchemeGroupVersion.WithKind("Service"),
		corev1.SchemeGroupVersion.WithKind("Pod"),
		appsv1.SchemeGroupVersion.WithKind("Deployment"),
		policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"),
		cmapi.SchemeGroupVersion.WithKind(cmapi.IssuerKind),
		cmapi.SchemeGroupVersion.WithKind(cmapi.CertificateRequestKind),
	}
	var foreign []string
	ourCertificates := map[string]bool{}
	for _, gvk := range kinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := r.APIReader.List(ctx, list, client.InNamespace(ns)); err != nil {
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				continue // kind not served (cert-manager removed): nothing of it to keep
			}
			if apierrors.IsForbidden(err) {
				// What cannot be seen cannot be proven knit's: keep the namespace rather than
				// delete a person's objects or hold the Mesh's deletion forever.
				foreign = append(foreign, gvk.Kind+"s (the operator may not list them)")
				continue
			}
			return nil, fmt.Errorf("listing %s in Namespace %s: %w", gvk.Kind, ns, err)
		}
		for _, obj := range list.Items {
			switch {
			case !madeByKnit(gvk.Kind, &obj, ourCertificates):
				foreign = append(foreign, gvk.Kind+" "+obj.Name)
			case gvk.Kind == cmapi.CertificateKind:
				ourCertificates[obj.Name] = true
			}
		}
	}
	slices.Sort(foreign)
	return foreign, nil
}

// madeByKnit says whether an object in the control-plane namespace is knit's, Kubernetes'
// per-namespace defaults, or derived by a controller from knit's objects.
func madeByKnit(kind string, obj *metav1.PartialObjectMetadata, ourCertificates map[string]bool) bool {
	if obj.Labels[meshv1.LabelPartOf] == meshv1.PartOfValue {
		return true
	}
	if kind == "ServiceAccount" && obj.Name == "default" || kind == "ConfigMap" && obj.Name == "kube-root-ca.crt" {
		return true
	}
	for _, o := range obj.OwnerReferences {
		if o.Kind == cmapi.CertificateKind && ourCertificates[o.Name] {
			return true
		}
	}
	return false
}

func (r *MeshReconciler) event(obj *meshv1.Mesh, kind, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(obj, nil, kind, reason, "Cleanup", format, args...)
	}
}
