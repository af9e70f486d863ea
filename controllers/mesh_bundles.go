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
	"errors"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// distributeTrustBundles writes the trust roots as ConfigMap knit-trust-bundle into the
// control-plane namespace and every meshed namespace, and removes it from namespaces that left.
func (r *MeshReconciler) distributeTrustBundles(ctx context.Context, st *meshState) {
	if len(st.roots) == 0 {
		return
	}
	mesh := st.mesh
	if !st.exclusionsKnown {
		return // without the list, a bundle could land in cert-manager's namespace
	}
	meshed, err := r.meshedNamespaces(ctx, mesh)
	if err != nil {
		st.fail(err)
		return
	}
	// Gateway proxies verify the control plane with the bundle too (mesh_gateways.go).
	gatewayNamespaces, err := r.gatewayNamespaces(ctx)
	if err != nil {
		st.fail(err)
		return
	}
	targets := append([]string{mesh.Spec.ControlPlane.Namespace}, meshed...)
	for _, ns := range gatewayNamespaces {
		if !slices.Contains(targets, ns) && !slices.Contains(mesh.Status.ExcludedNamespaces, ns) {
			targets = append(targets, ns)
		}
	}
	data := map[string]string{TrustBundleKey: string(bytes.Join(st.roots, nil))}
	written := true
	for _, ns := range targets {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustBundleName, Namespace: ns}}
		err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, cm, func() {
			syncLabels(cm, map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelTrustBundle: "true"})
			syncTo(&cm.Data, data)
		})
		var taken *NameTakenError
		switch {
		case errors.As(err, &taken):
			// A person's own ConfigMap of that name: only this namespace goes without a bundle.
			r.reportNameTaken(mesh, taken)
		case err != nil:
			st.fail(err)
			written = false
		}
	}
	// A namespace whose bundle name is taken has none to update: its meshed pods cannot start.
	st.bundlesDistributed = written

	var existing corev1.ConfigMapList
	if err := r.List(ctx, &existing, client.MatchingLabels{meshv1.LabelTrustBundle: "true"}); err != nil {
		st.fail(fmt.Errorf("listing trust bundles: %w", err))
		return
	}
	for i := range existing.Items {
		cm := &existing.Items[i]
		if cm.Name != TrustBundleName || slices.Contains(targets, cm.Namespace) || !metav1.IsControlledBy(cm, mesh) {
			continue
		}
		if err := r.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
			st.fail(fmt.Errorf("deleting ConfigMap %s/%s from a namespace that left the mesh: %w", cm.Namespace, cm.Name, err))
		}
	}
}

// meshedNamespaces lists the namespaces whose pods join the mesh: labelled knit.dev/inject=enabled
// or knit.dev/rev=<revision>, or selected by spec.injection.namespaceSelector; never one of
// status.excludedNamespaces (see neverMeshed).
func (r *MeshReconciler) meshedNamespaces(ctx context.Context, mesh *meshv1.Mesh) ([]string, error) {
	var selector labels.Selector
	if s := mesh.Spec.Injection.NamespaceSelector; s != nil {
		var err error
		if selector, err = metav1.LabelSelectorAsSelector(s); err != nil {
			return nil, fmt.Errorf("spec.injection.namespaceSelector: %w", err)
		}
	}
	var list corev1.NamespaceList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	excluded := mesh.Status.ExcludedNamespaces
	var out []string
	for _, ns := range list.Items {
		if slices.Contains(excluded, ns.Name) || ns.DeletionTimestamp != nil {
			continue
		}
		l := ns.Labels
		if l[meshv1.LabelInject] == meshv1.InjectEnabled || l[meshv1.LabelRevision] != "" ||
			(selector != nil && selector.Matches(labels.Set(l))) {
			out = append(out, ns.Name)
		}
	}
	return out, nil
}

// reportNameTaken tells, once per object, that a person's object holds a name knit needs: as a
// Warning on the namespace whose pods miss their trust bundle, and on the Mesh.
func (r *MeshReconciler) reportNameTaken(mesh *meshv1.Mesh, taken *NameTakenError) {
	if r.Recorder == nil || !r.nameTaken.firstReport(taken) {
		return
	}
	msg := fmt.Sprintf("ConfigMap %s exists and was not made by knit: pods in namespace %s get no trust bundle "+
		"(and meshed pods there cannot start) until it is renamed or deleted; the rest of the mesh is unaffected",
		taken.Object, taken.Object.Namespace)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: taken.Object.Namespace}}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	r.Recorder.Eventf(ns, mesh, corev1.EventTypeWarning, meshv1.ReasonNameTaken, "DistributeTrustBundle", "%s", msg)
	r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, meshv1.ReasonNameTaken, "DistributeTrustBundle", "%s", msg)
}

// reportedOnce remembers which name collisions were reported, by the colliding object's UID.
type reportedOnce struct {
	mu   sync.Mutex
	seen map[types.UID]bool
}

func (o *reportedOnce) firstReport(e *NameTakenError) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen == nil {
		o.seen = map[types.UID]bool{}
	}
	if o.seen[e.UID] {
		return false
	}
	o.seen[e.UID] = true
	return true
}
