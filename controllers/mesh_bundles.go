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
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	targets := append([]string{mesh.Spec.ControlPlane.Namespace}, meshed...)
	data := map[string]string{TrustBundleKey: string(bytes.Join(st.roots, nil))}
	for _, ns := range targets {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: TrustBundleName, Namespace: ns}}
		if err := ensure(ctx, r.Client, r.Scheme(), mesh, cm, func() {
			syncLabels(cm, map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelTrustBundle: "true"})
			syncTo(&cm.Data, data)
		}); err != nil {
			st.fail(err)
		}
	}

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
