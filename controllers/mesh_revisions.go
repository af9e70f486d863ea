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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// reconcileRevisions makes sure the MeshRevision for spec.version exists and matches the Mesh,
// and returns every revision the Mesh owns. Earlier revisions keep running: the upgrade
// controller retires them once no workload uses them.
func (r *MeshReconciler) reconcileRevisions(ctx context.Context, st *meshState) []meshv1.MeshRevision {
	mesh := st.mesh
	if st.release != nil {
		rev := &meshv1.MeshRevision{ObjectMeta: metav1.ObjectMeta{Name: RevisionName(mesh.Name, st.release.Version)}}
		issuer := issuerFor(mesh)
		err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, rev, func() {
			syncLabels(rev, map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue})
			if rev.Spec.Version == "" { // version and namespace are immutable
				rev.Spec.Version = st.release.Version
				rev.Spec.Namespace = mesh.Spec.ControlPlane.Namespace
			}
			syncTo(&rev.Spec.ControlPlane, mesh.Spec.ControlPlane)
			syncTo(&rev.Spec.TrustDomain, mesh.Spec.Trust.TrustDomain)
			syncTo(&rev.Spec.IssuerRef, issuer)
		})
		if err != nil {
			st.fail(err)
		} else {
			mesh.Status.ActiveRevision = rev.Name
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
	return owned
}
