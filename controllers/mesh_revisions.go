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
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// reconcileRevisions makes sure the MeshRevision for spec.version exists and matches the Mesh,
// moves status.activeRevision to it once it can serve, and returns every revision the Mesh
// owns. Earlier revisions keep running: the upgrade controller retires them once no workload
// uses them.
func (r *MeshReconciler) reconcileRevisions(ctx context.Context, st *meshState) []meshv1.MeshRevision {
	mesh := st.mesh
	if st.release != nil {
		name := RevisionName(mesh.Name, st.release.Version)
		// InPlace: the active revision takes the new version and keeps its name; its
		// control-plane Deployment rolls to the new release.
		inPlace := mesh.Spec.Upgrade.Strategy == meshv1.UpgradeInPlace && mesh.Status.ActiveRevision != ""
		if inPlace {
			name = mesh.Status.ActiveRevision
		} else if runs, err := r.activeRuns(ctx, mesh, st.release.Version); err != nil {
			st.fail(err)
			return nil
		} else if runs {
			// It took this release in place under its earlier name: a change of strategy alone
			// makes no new revision and moves no workload.
			name = mesh.Status.ActiveRevision
		}
		rev := &meshv1.MeshRevision{ObjectMeta: metav1.ObjectMeta{Name: name}}
		issuer := issuerFor(mesh)
		err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, rev, func() {
			syncLabels(rev, map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue})
			if rev.Spec.Version == "" { // the namespace is immutable
				rev.Spec.Namespace = mesh.Spec.ControlPlane.Namespace
			}
			if rev.Spec.Version == "" || inPlace {
				rev.Spec.Version = st.release.Version
			}
			syncTo(&rev.Spec.ControlPlane, mesh.Spec.ControlPlane)
			syncTo(&rev.Spec.TrustDomain, mesh.Spec.Trust.TrustDomain)
			syncTo(&rev.Spec.IssuerRef, issuer)
		})
		if err != nil {
			st.fail(err)
		} else {
			st.desiredRevision = rev.Name
		}
	}

	var list meshv1.MeshRevisionList
	if err := r.List(ctx, &list, client.MatchingLabels{meshv1.LabelPartOf: meshv1.PartOfValue}); err != nil {
		st.fail(fmt.Errorf("listing MeshRevisions: %w", err))
		return nil
	}
	var owned []meshv1.MeshRevision
	for _, rev := range list.Items {
		if metav1.IsControlledBy(&rev, mesh) {
			owned = append(owned, rev)
		}
	}
	sort.Slice(owned, func(i, j int) bool { return owned[i].Name < owned[j].Name })
	if st.desiredRevision != "" {
		mesh.Status.ActiveRevision = chooseActive(mesh.Status.ActiveRevision, st.desiredRevision, owned)
	}
	unknown, err := r.namespacesWithUnknownRevision(ctx, owned)
	if err != nil {
		st.fail(err)
	}
	st.unknownRevisionNamespaces = unknown
	return owned
}

// chooseActive keeps injection on the current revision until the desired one serves, so a new
// version whose control plane never comes up (bad image, crash loop) leaves injection where it
// works. With no working revision to keep, the desired one is active at once.
func chooseActive(current, desired string, revisions []meshv1.MeshRevision) string {
	if current == desired || findRevision(revisions, current) == nil {
		return desired
	}
	if ok, _ := revisionServes(findRevision(revisions, desired)); ok {
		return desired
	}
	return current
}

// revisionServes says whether a revision's control plane is Available and its webhook has a
// ready endpoint, as its own status reports for its current spec, and if not, why.
func revisionServes(rev *meshv1.MeshRevision) (bool, string) {
	if rev == nil {
		return false, "it does not exist yet"
	}
	if rev.Status.ObservedGeneration != rev.Generation {
		return false, "its status does not describe its current spec yet"
	}
	for _, t := range []string{meshv1.ConditionAvailable, meshv1.ConditionInjectionReady} {
		c := meta.FindStatusCondition(rev.Status.Conditions, t)
		if c == nil {
			return false, t + " is not reported yet"
		}
		if c.Status != metav1.ConditionTrue {
			return false, fmt.Sprintf("%s=%s (%s): %s", t, c.Status, c.Reason, c.Message)
		}
	}
	return true, ""
}

// namespacesWithUnknownRevision lists the namespaces labelled knit.dev/rev with a revision that
// does not exist: no webhook selects them, so their new pods start without a proxy.
func (r *MeshReconciler) namespacesWithUnknownRevision(ctx context.Context, revisions []meshv1.MeshRevision) ([]string, error) {
	var list corev1.NamespaceList
	if err := r.List(ctx, &list, client.HasLabels{meshv1.LabelRevision}); err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var out []string
	for _, ns := range list.Items {
		want := ns.Labels[meshv1.LabelRevision]
		if ns.DeletionTimestamp == nil && findRevision(revisions, want) == nil {
			out = append(out, fmt.Sprintf("%s (knit.dev/rev=%s)", ns.Name, want))
		}
	}
	return out, nil
}

// activeRuns says whether the Mesh's active revision already runs version.
func (r *MeshReconciler) activeRuns(ctx context.Context, mesh *meshv1.Mesh, version string) (bool, error) {
	if mesh.Status.ActiveRevision == "" {
		return false, nil
	}
	var active meshv1.MeshRevision
	if err := r.Get(ctx, client.ObjectKey{Name: mesh.Status.ActiveRevision}, &active); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return metav1.IsControlledBy(&active, mesh) && active.Spec.Version == version, nil
}
