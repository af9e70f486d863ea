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

// Package controllers holds knit's reconcilers. Each file is one concern: the Mesh reconciler's
// setup and flow (mesh_controller.go), its trust (mesh_trust.go), its revisions
// (mesh_revisions.go) and its status (mesh_status.go); the MeshRevision reconciler runs each
// revision's control plane.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/internal/versions"
)

// DefaultExpiryWarning is how long before a trust root or issuer expires CertificatesHealthy
// turns False.
const DefaultExpiryWarning = 30 * 24 * time.Hour

// MeshReconciler reconciles the cluster's single Mesh: the control-plane namespace, the trust
// chain in cert-manager, the trust bundles of meshed namespaces, the MeshRevisions, and the
// Mesh's status, which it writes once per reconcile and only when it changed.
type MeshReconciler struct {
	client.Client
	// APIReader reads without the cache: Secrets (never cached cluster-wide) and CRDs.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Versions  versions.Table
	// OperatorNamespace is never meshed.
	OperatorNamespace string
	// OperatorServiceAccount is the operator's ServiceAccount (in OperatorNamespace), to which
	// it binds SecretsReaderRole in the control-plane namespace.
	OperatorServiceAccount string
	// SecretsReaderRole: see DefaultSecretsReaderRole.
	SecretsReaderRole string
	// ExpiryWarning: see DefaultExpiryWarning.
	ExpiryWarning time.Duration
	// RevisionGracePeriod: see DefaultRevisionGracePeriod.
	RevisionGracePeriod time.Duration
	// UpgradePollInterval: see DefaultUpgradePollInterval.
	UpgradePollInterval time.Duration
	// RootRotationHold: see DefaultRootRotationHold.
	RootRotationHold time.Duration
	// TestWorkloadCertDuration, for tests only, makes every revision's control plane issue
	// workload certificates this short (see testWorkloadCertArgs); zero, the default, leaves
	// the Mesh's trust.workloadCertDuration in force. The Mesh API cannot set it.
	TestWorkloadCertDuration time.Duration

	certManager *certManagerDetector
	// gatewayAPI is true when Gateway API's CRDs were installed when the operator started: only
	// then do the gateway controllers run.
	gatewayAPI bool
	nameTaken  reportedOnce
	// retired maps the MeshRevisions the upgrade removed to their UIDs (upgrade_controller.go).
	retired sync.Map
}

// meshState is what one reconcile learns and decides, passed between its phases.
type meshState struct {
	mesh    *meshv1.Mesh
	release *versions.Release // nil when spec.version cannot run
	issuer  meshv1.IssuerReference
	roots   [][]byte // PEM of the trust roots, newest first
	// rotation is a re-issued bootstrapped root that does not sign yet (mesh_signing.go).
	rotation *rootRotation
	// bundlesDistributed is true once this reconcile wrote roots into every trust bundle.
	bundlesDistributed bool
	// exclusionsKnown is true once status.excludedNamespaces is current.
	exclusionsKnown bool
	// desiredRevision is the MeshRevision that runs spec.version, once it exists.
	desiredRevision string
	// unknownRevisionNamespaces are namespaces labelled for a revision that does not exist.
	unknownRevisionNamespaces []string
	// upgrade is what the upgrade phase found (upgrade_controller.go); nil when it did not run.
	upgrade *upgradeState
	// requeueAfter asks for a reconcile at a known future event (a certificate nearing expiry).
	requeueAfter time.Duration
	errs         []error
}

func (s *meshState) fail(err error) { s.errs = append(s.errs, err) }

func (s *meshState) requeueAt(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if s.requeueAfter == 0 || d < s.requeueAfter {
		s.requeueAfter = d
	}
}

// RBAC of the operator: only the verbs the code uses (the integration suite runs the reconcilers
// as the operator's ServiceAccount, so a missing one fails a spec); cluster-scoped objects and
// Secrets only in the control-plane namespace. rbac_test.go checks the generated role.
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshes/status,verbs=patch
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshes/finalizers,verbs=update
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshrevisions,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=list;watch;create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;update,resourceNames=knit-operator-secrets
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=knit-secrets-reader
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch,resourceNames=cert-manager-controller
// +kubebuilder:rbac:groups=cert-manager.io,resources=issuers;certificates,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=cert-manager.io,resources=clusterissuers,verbs=get;list;watch
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=list

// Reconcile runs the phases in order; a phase that fails is reported in status and the rest
// still run where they can, so one fault does not hide the state of everything else.
func (r *MeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var mesh meshv1.Mesh
	if err := r.Get(ctx, req.NamespacedName, &mesh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.setDefaults()
	if !mesh.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, &mesh)
	}
	if err := r.addFinalizer(ctx, &mesh); err != nil {
		return ctrl.Result{}, err
	}
	before := mesh.DeepCopy()
	st := &meshState{mesh: &mesh}
	conditions.InitUnknown(&mesh.Status.Conditions, mesh.Generation, meshv1.ReasonPending, meshv1.MeshConditionTypes...)

	if err := r.ensureNamespace(ctx, &mesh); err != nil {
		st.fail(err)
	} else if err := r.ensureSecretsAccess(ctx, &mesh); err != nil {
		st.fail(err)
	}
	r.findExclusions(ctx, st)
	r.resolveVersion(st)
	if r.checkDependencies(ctx, st) {
		r.reconcileTrust(ctx, st)
		r.distributeTrustBundles(ctx, st)
		r.moveSigning(ctx, st) // mesh_signing.go
	}
	revisions := r.reconcileRevisions(ctx, st)
	revisions = r.reconcileUpgrade(ctx, st, revisions) // upgrade_controller.go
	r.reportPodSecurity(ctx, st)                       // mesh_podsecurity.go
	r.reconcileGateways(ctx, st)                       // mesh_gateways.go
	r.reportGateways(ctx, st)
	r.computeStatus(st, revisions)

	if !equality.Semantic.DeepEqual(before.Status, mesh.Status) {
		if err := r.Status().Patch(ctx, &mesh, client.MergeFrom(before)); err != nil {
			if apierrors.IsNotFound(err) {
				return ctrl.Result{}, nil // deleted meanwhile: its children go with it
			}
			return ctrl.Result{}, fmt.Errorf("patching status of Mesh %s: %w", mesh.Name, err)
		}
		r.recordTransitions(before, &mesh)
	}
	if err := errors.Join(st.errs...); err != nil {
		log.FromContext(ctx).Error(err, "reconcile incomplete")
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: st.requeueAfter}, nil
}

// ensureNamespace creates the control-plane namespace when missing, marked as the operator's
// (AnnotationCreatedBy). It is not owned by the Mesh: the garbage collector would delete it with
// everything in it, a person's Issuers and Secrets included. finalize decides instead.
func (r *MeshReconciler) ensureNamespace(ctx context.Context, mesh *meshv1.Mesh) error {
	name := mesh.Spec.ControlPlane.Namespace
	var ns corev1.Namespace
	err := r.Get(ctx, client.ObjectKey{Name: name}, &ns)
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading Namespace %s: %w", name, err)
	}
	if err == nil {
		return r.disownNamespace(ctx, mesh, &ns)
	}
	ns = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue},
		Annotations: map[string]string{AnnotationCreatedBy: createdByOperator},
	}}
	if err := r.Create(ctx, &ns); err != nil {
		return fmt.Errorf("creating Namespace %s: %w", name, err)
	}
	return nil
}

// disownNamespace drops the Mesh's owner reference from a namespace an earlier operator version
// created with one, so deleting the Mesh cannot delete it through the garbage collector.
func (r *MeshReconciler) disownNamespace(ctx context.Context, mesh *meshv1.Mesh, ns *corev1.Namespace) error {
	if !metav1.IsControlledBy(ns, mesh) {
		return nil
	}
	patch := client.MergeFrom(ns.DeepCopy())
	ns.OwnerReferences = slices.DeleteFunc(ns.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == mesh.UID })
	if ns.Annotations == nil {
		ns.Annotations = map[string]string{}
	}
	ns.Annotations[AnnotationCreatedBy] = createdByOperator
	if err := r.Patch(ctx, ns, patch); err != nil {
		return fmt.Errorf("removing the Mesh's owner reference from Namespace %s: %w", ns.Name, err)
	}
	return nil
}

// resolveVersion checks spec.version against the release table and the legal upgrade paths.
func (r *MeshReconciler) resolveVersion(st *meshState) {
	mesh := st.mesh
	release, err := r.Versions.Lookup(mesh.Spec.Version)
	if err == nil {
		err = r.Versions.CheckUpgrade(mesh.Status.Version, mesh.Spec.Version)
		if err != nil {
			conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionReconciled, metav1.ConditionFalse,
				meshv1.ReasonIllegalUpgradePath, "spec.version: %v; the mesh keeps running %s", err, mesh.Status.Version)
			return
		}
		st.release = &release
		return
	}
	conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionReconciled, metav1.ConditionFalse,
		meshv1.ReasonUnsupportedVersion, "spec.version: %v", err)
}

// checkDependencies reports whether cert-manager is installed, and starts the watches on its
// kinds the first time it is.
func (r *MeshReconciler) checkDependencies(ctx context.Context, st *meshState) bool {
	mesh := st.mesh
	missing, err := r.certManager.check(ctx)
	switch {
	case err != nil:
		st.fail(err)
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionDependenciesHealthy,
			metav1.ConditionUnknown, meshv1.ReasonReconcileFailed, "checking for cert-manager: %v", err)
		return false
	case len(missing) > 0:
		msg := missingMessage(missing)
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionDependenciesHealthy,
			metav1.ConditionFalse, meshv1.ReasonCertManagerMissing, "%s", msg)
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesReady,
			metav1.ConditionFalse, meshv1.ReasonCertManagerMissing, "%s", msg)
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionCertificatesHealthy,
			metav1.ConditionUnknown, meshv1.ReasonCertManagerMissing, "%s", msg)
		return false
	}
	stalled, msg, lapsesAt, err := r.certManager.stalled(ctx, time.Now())
	switch {
	case err != nil:
		st.fail(err)
	case stalled:
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionDependenciesHealthy,
			metav1.ConditionFalse, meshv1.ReasonCertManagerNotRunning, "%s", msg)
	default:
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionDependenciesHealthy,
			metav1.ConditionTrue, meshv1.ReasonAsExpected, "cert-manager is installed and its controller is running")
	}
	// A renewal of cert-manager's Lease is watched; its absence is not: look again just after
	// the Lease would lapse.
	if !lapsesAt.IsZero() {
		st.requeueAt(lapsesAt)
	}
	return true
}

// recordTransitions emits an event for each condition whose status or reason changed.
func (r *MeshReconciler) recordTransitions(before, after *meshv1.Mesh) {
	if r.Recorder == nil {
		return
	}
	for _, c := range after.Status.Conditions {
		old := findCondition(before.Status.Conditions, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason {
			continue
		}
		if c.Status == metav1.ConditionUnknown && old == nil {
			continue // the initial Unknowns are not news
		}
		kind := corev1.EventTypeNormal
		if !conditionHealthy(c) && c.Status != metav1.ConditionUnknown {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(after, nil, kind, c.Reason, eventAction(c), "%s is %s: %s", c.Type, c.Status, c.Message)
	}
}

// eventAction names what changed. The event recorder folds events with the same reason and
// action into one series that keeps the first message, so the action carries the condition,
// its status and a digest of its message: a different message is a different event.
func eventAction(c metav1.Condition) string {
	h := fnv.New32a()
	h.Write([]byte(c.Message))
	return fmt.Sprintf("Set%s%s-%08x", c.Type, c.Status, h.Sum32())
}

// conditionHealthy says whether a condition reads as good news: True for most, False for
// Degraded, either way for Upgrading (an upgrade is not a fault).
func conditionHealthy(c metav1.Condition) bool {
	switch c.Type {
	case meshv1.ConditionDegraded, meshv1.ConditionDataPlaneSkew:
		return c.Status == metav1.ConditionFalse
	case meshv1.ConditionUpgrading:
		return true
	default:
		return c.Status == metav1.ConditionTrue
	}
}

func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// setDefaults fills what the caller left out, so a reconciler built by hand (in tests) works.
func (r *MeshReconciler) setDefaults() {
	if r.APIReader == nil {
		r.APIReader = r.Client
	}
	if r.Versions.Versions == nil {
		r.Versions = versions.Default
	}
	if r.SecretsReaderRole == "" {
		r.SecretsReaderRole = DefaultSecretsReaderRole
	}
	if r.ExpiryWarning == 0 {
		r.ExpiryWarning = DefaultExpiryWarning
	}
	if r.RootRotationHold == 0 {
		r.RootRotationHold = DefaultRootRotationHold
	}
	if r.certManager == nil {
		r.certManager = &certManagerDetector{reader: r.APIReader}
	}
}

// SetupWithManager registers the Mesh reconciler and the MeshRevision reconciler, which share
// the cert-manager detector.
func (r *MeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	r.setDefaults()

	enqueueMesh := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: meshv1.MeshName}}}
	})
	if err := r.DetectOptionalAPIs(mgr.GetRESTMapper()); err != nil {
		return err
	}
	gatewayAPI := r.gatewayAPI
	b := ctrl.NewControllerManagedBy(mgr)
	if gatewayAPI {
		// Any Gateway's status feeds GatewaysReady; a new one may need a trust bundle.
		b = b.Watches(&gatewayv1.Gateway{}, enqueueMesh)
	}
	c, err := b.
		For(&meshv1.Mesh{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, beingDeleted))).
		Owns(&meshv1.MeshRevision{}).
		Owns(&corev1.ConfigMap{}, builder.WithPredicates(trustBundlePredicate)).
		// Namespaces join and leave the mesh by their labels.
		Watches(&corev1.Namespace{}, enqueueMesh, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// cert-manager being installed (or removed) changes DependenciesHealthy.
		Watches(&apiextensionsv1.CustomResourceDefinition{}, enqueueMesh,
			builder.OnlyMetadata, builder.WithPredicates(certManagerCRDPredicate)).
		// A renewal of cert-manager's Lease is its controller running again (the cache holds
		// only that Lease).
		Watches(&coordinationv1.Lease{}, enqueueMesh, builder.WithPredicates(certManagerLeasePredicate)).
		Named("mesh").
		Build(r)
	if err != nil {
		return err
	}
	r.certManager.whenInstalled(func() error {
		for _, src := range []source.Source{
			// Every knit Certificate (the cache holds only those): the root CA's and the serving
			// certificates', whose Secrets carry the trust root the Mesh reports and distributes.
			source.Kind(mgr.GetCache(), client.Object(&cmapi.Certificate{}), enqueueMesh, ourLabels),
			// A user's issuer is not owned: any change may be the one the Mesh waits for.
			source.Kind(mgr.GetCache(), client.Object(&cmapi.Issuer{}), enqueueMesh),
			source.Kind(mgr.GetCache(), client.Object(&cmapi.ClusterIssuer{}), enqueueMesh),
		} {
			if err := c.Watch(src); err != nil {
				return err
			}
		}
		return nil
	})
	if err := (&MeshRevisionReconciler{
		Client: mgr.GetClient(), APIReader: r.APIReader, Versions: r.Versions, OperatorNamespace: r.OperatorNamespace,
		TestWorkloadCertDuration: r.TestWorkloadCertDuration,
	}).SetupWithManager(mgr, r.certManager); err != nil {
		return err
	}
	if !gatewayAPI {
		mgr.GetLogger().Info("Gateway API CRDs are not installed: gateways are off until the operator restarts after they are")
		return nil
	}
	if err := (&GatewayClassReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&GatewayReconciler{
		Client: mgr.GetClient(), APIReader: r.APIReader, Recorder: r.Recorder, Versions: r.Versions,
	}).SetupWithManager(mgr)
}

// DetectOptionalAPIs records which optional APIs (Gateway API) are installed now: the
// reconciler serves them only if so. SetupWithManager calls it; a reconciler built by hand (in
// tests) must call it too, or it reports the Mesh as a manager without those APIs would.
func (r *MeshReconciler) DetectOptionalAPIs(mapper meta.RESTMapper) error {
	installed, err := gatewayAPIInstalled(mapper)
	r.gatewayAPI = installed
	return err
}

// gatewayAPIInstalled says whether the API server serves Gateway API's Gateway kind.
func gatewayAPIInstalled(mapper meta.RESTMapper) (bool, error) {
	_, err := mapper.RESTMapping(schema.GroupKind{Group: gatewayv1.GroupName, Kind: "Gateway"}, gatewayv1.GroupVersion.Version)
	switch {
	case meta.IsNoMatchError(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("looking up Gateway API's Gateway kind: %w", err)
	}
	return true, nil
}

var certManagerCRDPredicate = predicate.NewPredicateFuncs(func(obj client.Object) bool {
	for _, name := range certManagerCRDs {
		if obj.GetName() == name {
			return true
		}
	}
	return false
})

// beingDeleted passes the update that starts a Mesh's deletion, so its finalizer runs.
var beingDeleted = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	return !e.ObjectNew.GetDeletionTimestamp().IsZero()
}}

var certManagerLeasePredicate = predicate.NewPredicateFuncs(func(obj client.Object) bool {
	return client.ObjectKeyFromObject(obj) == certManagerLease
})

var ourLabels = predicate.NewPredicateFuncs(func(obj client.Object) bool {
	return obj.GetLabels()[meshv1.LabelPartOf] == meshv1.PartOfValue
})

var trustBundlePredicate = predicate.NewPredicateFuncs(func(obj client.Object) bool {
	return obj.GetLabels()[meshv1.LabelTrustBundle] == "true"
})
