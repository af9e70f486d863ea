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

// Package controllers holds knit's reconcilers. Each file is one concern.
package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
)

// MeshReconciler reconciles the cluster's single Mesh.
type MeshReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// readyRequirements are the conditions the Ready summary depends on.
var readyRequirements = []conditions.Requirement{
	{Type: meshv1.ConditionReconciled, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionAvailable, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionCertificatesReady, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionCertificatesHealthy, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionDependenciesHealthy, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionInjectionReady, Healthy: metav1.ConditionTrue},
	{Type: meshv1.ConditionDegraded, Healthy: metav1.ConditionFalse},
}

// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshes,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshrevisions,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshrevisions/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings the Mesh's status in line with what the operator has done for it. The status
// is computed in memory and written at most once, and only when it changed, so a reconcile with
// nothing new makes no API write.
func (r *MeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)

	var mesh meshv1.Mesh
	if err := r.Get(ctx, req.NamespacedName, &mesh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := mesh.DeepCopy()

	firstSight := len(mesh.Status.Conditions) == 0
	r.computeStatus(&mesh)

	if equality.Semantic.DeepEqual(before.Status, mesh.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, &mesh, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of Mesh %q: %w", mesh.Name, err)
	}
	logger.V(1).Info("status updated", "generation", mesh.Generation)
	if firstSight && r.Recorder != nil {
		r.Recorder.Eventf(&mesh, nil, "Normal", "Initializing", "Reconcile",
			"Mesh %s seen for the first time, version %s", mesh.Name, mesh.Spec.Version)
	}
	return ctrl.Result{}, nil
}

// computeStatus fills the status from the spec and what has been determined so far.
func (r *MeshReconciler) computeStatus(mesh *meshv1.Mesh) {
	gen := mesh.Generation
	st := &mesh.Status
	conditions.InitUnknown(&st.Conditions, gen, meshv1.ReasonPending, meshv1.MeshConditionTypes...)
	conditions.Set(&st.Conditions, gen, meshv1.ConditionReconciled, metav1.ConditionTrue,
		meshv1.ReasonReconciled, "generation %d of Mesh %s applied", gen, mesh.Name)

	sum := conditions.Summarize(st.Conditions, meshv1.ReasonAllReady, meshv1.ReasonNotReady, readyRequirements...)
	conditions.Set(&st.Conditions, gen, meshv1.ConditionReady, sum.Status, sum.Reason, "%s", sum.Message)

	st.ObservedGeneration = gen
	st.DesiredVersion = mesh.Spec.Version
}

// SetupWithManager registers the reconciler. Status-only updates do not trigger a reconcile:
// the operator's own status writes would otherwise loop.
func (r *MeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&meshv1.Mesh{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("mesh").
		Complete(r)
}
