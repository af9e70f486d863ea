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
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
)

// readyRequirements are the conditions the Ready summary depends on. CertificatesHealthy is a
// warning (Degraded), not an outage: a root nearing expiry still works.
// Causes come before effects, so the summary says a cause once and points at it after.
var readyRequirements = []conditions.Requirement{
	{Type: meshv1.ConditionDependenciesHealthy, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionCertificatesReady, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionReconciled, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionAvailable, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionInjectionReady, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionControlPlaneReady, Healthy: metav1.ConditionTrue},
}

// computeStatus derives the remaining conditions and fields from what the phases found.
func (r *MeshReconciler) computeStatus(st *meshState, revisions []meshv1.MeshRevision) {
	mesh := st.mesh
	gen := mesh.Generation
	s := &mesh.Status
	set := func(t string, status metav1.ConditionStatus, reason, format string, args ...any) {
		conditions.Set(&s.Conditions, gen, t, status, reason, format, args...)
	}

	switch {
	case len(st.errs) > 0:
		set(meshv1.ConditionReconciled, metav1.ConditionFalse, meshv1.ReasonReconcileFailed, "%v", errors.Join(st.errs...))
	case st.release != nil:
		set(meshv1.ConditionReconciled, metav1.ConditionTrue, meshv1.ReasonReconciled,
			"generation %d applied: MeshRevision %s runs %s", gen, st.desiredRevision, st.release.Version)
	} // else resolveVersion said why the version cannot run

	active := findRevision(revisions, s.ActiveRevision)
	// The active revision's own conditions say whether the mesh serves and injects. Their
	// messages are taken as they are (they name the revision's objects), so that the Ready
	// summary can point at them instead of repeating them from ControlPlaneReady.
	for _, t := range []string{meshv1.ConditionAvailable, meshv1.ConditionInjectionReady} {
		switch c := revisionCondition(active, t); {
		case active == nil:
			set(t, metav1.ConditionFalse, meshv1.ReasonPending, "no MeshRevision runs the mesh yet")
		case c == nil:
			set(t, metav1.ConditionUnknown, meshv1.ReasonPending, "MeshRevision %s has not reported %s yet", active.Name, t)
		default:
			set(t, c.Status, c.Reason, "%s", c.Message)
		}
	}

	var notReady, names []string
	for i := range revisions {
		rev := &revisions[i]
		names = append(names, fmt.Sprintf("%s (%s)", rev.Name, rev.Spec.Version))
		if c := revisionCondition(rev, meshv1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			msg := "not reported yet"
			if c != nil {
				msg = c.Message
			}
			notReady = append(notReady, fmt.Sprintf("MeshRevision %s: %s", rev.Name, msg))
		}
	}
	switch {
	case len(revisions) == 0:
		set(meshv1.ConditionControlPlaneReady, metav1.ConditionFalse, meshv1.ReasonPending, "no MeshRevision exists yet")
	case len(notReady) > 0:
		set(meshv1.ConditionControlPlaneReady, metav1.ConditionFalse, meshv1.ReasonNotReady, "%s", strings.Join(notReady, "; "))
	default:
		set(meshv1.ConditionControlPlaneReady, metav1.ConditionTrue, meshv1.ReasonAllReady,
			"MeshRevision %s ready", strings.Join(names, ", "))
	}

	r.setUpgradeStatus(st, revisions)            // upgrade_status.go
	r.setProxyReports(st, revisions, time.Now()) // mesh_dataplane.go

	// Operator releases before every spec field took effect kept SpecSupported (False while
	// a field had none); it says nothing any more.
	meta.RemoveStatusCondition(&s.Conditions, "SpecSupported")
	if len(st.unknownRevisionNamespaces) > 0 {
		set(meshv1.ConditionNamespacesInjected, metav1.ConditionFalse, meshv1.ReasonRevisionNotFound,
			"namespaces labelled for a MeshRevision that does not exist start new pods without a proxy: %s; "+
				"label them knit.dev/rev=%s or knit.dev/inject=enabled instead",
			strings.Join(st.unknownRevisionNamespaces, ", "), s.ActiveRevision)
	} else {
		set(meshv1.ConditionNamespacesInjected, metav1.ConditionTrue, meshv1.ReasonAsExpected,
			"every namespace labelled knit.dev/rev names an existing MeshRevision")
	}
	computeHighlyAvailable(mesh)
	r.computeDegraded(mesh)
	sum := conditions.Summarize(s.Conditions, meshv1.ReasonAllReady, meshv1.ReasonNotReady, readyRequirements...)
	set(meshv1.ConditionReady, sum.Status, sum.Reason, "%s", sum.Message)
	s.ObservedGeneration = gen
	s.DesiredVersion = mesh.Spec.Version
}

// computeDegraded is True when certificates are about to expire, or when a mesh that has run
// (status.version is set) lost something it needs.
func (r *MeshReconciler) computeDegraded(mesh *meshv1.Mesh) {
	s := &mesh.Status
	var faults []string
	for _, t := range []string{meshv1.ConditionCertificatesHealthy, meshv1.ConditionAvailable,
		meshv1.ConditionCertificatesReady, meshv1.ConditionDependenciesHealthy} {
		c := meta.FindStatusCondition(s.Conditions, t)
		if c == nil || c.Status != metav1.ConditionFalse {
			continue
		}
		if t == meshv1.ConditionCertificatesHealthy || s.Version != "" {
			faults = append(faults, fmt.Sprintf("%s (%s): %s", t, c.Reason, c.Message))
		}
	}
	if len(faults) > 0 {
		conditions.Set(&s.Conditions, mesh.Generation, meshv1.ConditionDegraded, metav1.ConditionTrue,
			meshv1.ReasonNotReady, "%s", strings.Join(faults, "; "))
		return
	}
	conditions.Set(&s.Conditions, mesh.Generation, meshv1.ConditionDegraded, metav1.ConditionFalse,
		meshv1.ReasonAsExpected, "nothing that worked has stopped working")
}

// computeHighlyAvailable warns when a node drain can stop pod creation in meshed namespaces:
// the PodDisruptionBudget lets the only control-plane pod be evicted, and with failurePolicy
// Fail the API server refuses pods while no webhook answers.
func computeHighlyAvailable(mesh *meshv1.Mesh) {
	spec := mesh.Spec
	if spec.ControlPlane.Replicas < 2 && spec.Injection.FailurePolicy == meshv1.FailurePolicyFail {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionHighlyAvailable, metav1.ConditionFalse,
			meshv1.ReasonSingleReplicaFailClosed,
			"controlPlane.replicas is %d and injection.failurePolicy is Fail: a node drain may evict the only "+
				"control-plane pod, and until it runs again the API server refuses pod creation in meshed namespaces; "+
				"set controlPlane.replicas to 2 or more", spec.ControlPlane.Replicas)
		return
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionHighlyAvailable, metav1.ConditionTrue,
		meshv1.ReasonAsExpected, "controlPlane.replicas is %d with injection.failurePolicy %s",
		spec.ControlPlane.Replicas, spec.Injection.FailurePolicy)
}

func findRevision(revs []meshv1.MeshRevision, name string) *meshv1.MeshRevision {
	for i := range revs {
		if revs[i].Name == name {
			return &revs[i]
		}
	}
	return nil
}

func revisionCondition(rev *meshv1.MeshRevision, t string) *metav1.Condition {
	if rev == nil {
		return nil
	}
	return meta.FindStatusCondition(rev.Status.Conditions, t)
}
