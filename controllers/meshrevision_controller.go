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
	"errors"
	"fmt"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/internal/versions"
)

// MeshRevisionReconciler runs one revision's control plane: its Deployment, Service,
// ServiceAccount, RBAC, PodDisruptionBudget and serving Certificate, and reports whether it is
// available. Everything is owned by the MeshRevision, which the Mesh owns.
type MeshRevisionReconciler struct {
	client.Client
	// APIReader reads Secrets without caching them.
	APIReader client.Reader
	Versions  versions.Table
	// OperatorNamespace is never injected.
	OperatorNamespace string
	// TestWorkloadCertDuration: see MeshReconciler.
	TestWorkloadCertDuration time.Duration

	certManager *certManagerDetector
}

// Cluster-scoped children by name: one per supported release (internal/versions); rbac_test.go
// fails when a release is missing here.
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshrevisions,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshrevisions/status,verbs=patch
// +kubebuilder:rbac:groups=mesh.knit.dev,resources=meshrevisions/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles;clusterrolebindings,verbs=list;watch;create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles;clusterrolebindings,verbs=get;update,resourceNames=knit-controlplane-v0-1-0;knit-controlplane-v0-2-0
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterrolebindings,verbs=get;update,resourceNames=knit-controlplane-v0-1-0-gateway-secrets;knit-controlplane-v0-2-0-gateway-secrets
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=knit-gateway-secrets-reader
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=list;watch;create
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;update;delete,resourceNames=knit-injector-v0-1-0;knit-injector-v0-2-0
// The control plane's own permissions (controlPlaneRules), which the operator must hold to grant.
// Approval only for the signer of the CA the operator bootstraps; a Mesh naming another issuer
// needs a cluster admin to grant the operator approval for that signer (README, "Your own issuer").
// +kubebuilder:rbac:groups="",resources=services;pods;namespaces;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificaterequests/status,verbs=update;patch
// +kubebuilder:rbac:groups=cert-manager.io,resources=signers,verbs=approve,resourceNames="issuers.cert-manager.io/knit-system.knit-ca"
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;grpcroutes;referencegrants,verbs=get;list;watch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes/status;grpcroutes/status,verbs=update;patch

// Reconcile makes the revision's control plane match its spec and records its availability.
func (r *MeshRevisionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rev meshv1.MeshRevision
	if err := r.Get(ctx, req.NamespacedName, &rev); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.Versions.Versions == nil {
		r.Versions = versions.Default
	}
	if r.APIReader == nil {
		r.APIReader = r.Client
	}
	if r.certManager == nil {
		r.certManager = &certManagerDetector{reader: r.APIReader}
	}
	before := rev.DeepCopy()
	gen := rev.Generation
	conds := &rev.Status.Conditions

	applyErr := r.applyControlPlane(ctx, &rev)
	if applyErr != nil {
		reason := meshv1.ReasonReconcileFailed
		var unsupported *versions.UnsupportedError
		var notGranted *SignerNotGrantedError
		switch {
		case errors.As(applyErr, &unsupported):
			reason = meshv1.ReasonUnsupportedVersion
		case errors.As(applyErr, &notGranted):
			reason = meshv1.ReasonSignerNotGranted
		case errors.As(applyErr, new(*NameTakenError)):
			reason = meshv1.ReasonNameTaken
		}
		conditions.Set(conds, gen, meshv1.ConditionReconciled, metav1.ConditionFalse, reason, "%v", applyErr)
	} else {
		conditions.Set(conds, gen, meshv1.ConditionReconciled, metav1.ConditionTrue, meshv1.ReasonReconciled,
			"control plane of MeshRevision %s applied", rev.Name)
	}
	if err := r.observeAvailability(ctx, &rev, applyErr == nil); err != nil {
		return ctrl.Result{}, err
	}
	sum := conditions.Summarize(*conds, meshv1.ReasonAllReady, meshv1.ReasonNotReady,
		conditions.Requirement{Type: meshv1.ConditionReconciled, Healthy: metav1.ConditionTrue},
		conditions.Requirement{Type: meshv1.ConditionAvailable, Healthy: metav1.ConditionTrue},
		conditions.Requirement{Type: meshv1.ConditionCertificatesReady, Healthy: metav1.ConditionTrue},
		conditions.Requirement{Type: meshv1.ConditionInjectionReady, Healthy: metav1.ConditionTrue})
	conditions.Set(conds, gen, meshv1.ConditionReady, sum.Status, sum.Reason, "%s", sum.Message)
	rev.Status.ObservedGeneration = gen

	if !equality.Semantic.DeepEqual(before.Status, rev.Status) {
		if err := r.Status().Patch(ctx, &rev, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("patching status of MeshRevision %s: %w", rev.Name, err)
		}
	}
	nextExpiry, err := r.removeExpiredReports(ctx, &rev, time.Now()) // meshrevision_reports.go
	if err != nil {
		return ctrl.Result{}, errors.Join(applyErr, err)
	}
	if applyErr != nil || nextExpiry == 0 {
		return ctrl.Result{}, applyErr
	}
	return ctrl.Result{RequeueAfter: nextExpiry + time.Second}, nil
}

// applyControlPlane creates or repairs every object of the revision's control plane.
func (r *MeshRevisionReconciler) applyControlPlane(ctx context.Context, rev *meshv1.MeshRevision) error {
	release, err := r.Versions.Lookup(rev.Spec.Version)
	if err != nil {
		return err
	}
	var mesh meshv1.Mesh
	if err := r.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &mesh); err != nil {
		return fmt.Errorf("reading Mesh %s: %w", meshv1.MeshName, err)
	}
	if !mesh.DeletionTimestamp.IsZero() {
		return nil // the Mesh's finalizer removes the webhooks; nothing may bring them back
	}
	injectArgs, err := injectionArgs(&mesh, release.ProxyImage, rev)
	if err != nil {
		return err
	}
	injectArgs = append(injectArgs, testWorkloadCertArgs(r.TestWorkloadCertDuration)...)
	serving, err := r.servingCertificate(ctx, rev)
	if err != nil {
		return err
	}
	// Trust comes before use: pods restart with a certificate whose CA the webhook's caBundle
	// already holds (or before any webhook exists).
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: injectorName(rev)}}
	if err := r.Get(ctx, client.ObjectKeyFromObject(mwc), mwc); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", mwc.Name, err)
	}
	podCert := serving.fingerprint
	if live := liveCABundle(mwc); len(live) > 0 && !bundleHolds(live, serving.ca) {
		podCert = "" // keep the running pods until the next reconcile, after the caBundle update
	}
	name, ns := controlPlaneName(rev), rev.Spec.Namespace
	labels := controlPlaneLabels(rev)
	meta := func() metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: ns} }
	scheme := r.Scheme()

	sa := &corev1.ServiceAccount{ObjectMeta: meta()}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}}
	secretsBinding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: gatewaySecretsBindingName(rev)}}
	svc := &corev1.Service{ObjectMeta: meta()}
	dep := &appsv1.Deployment{ObjectMeta: meta()}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: meta()}

	steps := []struct {
		obj  client.Object
		sync func()
	}{
		{sa, func() { syncLabels(sa, labels) }},
		{role, func() { syncLabels(role, labels); syncTo(&role.Rules, controlPlaneRules(rev)) }},
		{binding, func() {
			syncLabels(binding, labels)
			// roleRef is immutable: set once, at creation.
			if binding.RoleRef.Name == "" {
				binding.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
			}
			syncTo(&binding.Subjects, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}})
		}},
		{secretsBinding, func() {
			syncLabels(secretsBinding, labels)
			if secretsBinding.RoleRef.Name == "" {
				secretsBinding.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: GatewaySecretsReaderRole}
			}
			syncTo(&secretsBinding.Subjects, []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}})
		}},
		{svc, func() {
			syncLabels(svc, labels)
			want := desiredService(rev)
			syncTo(&svc.Spec.Selector, want.Selector)
			syncTo(&svc.Spec.Ports, want.Ports)
		}},
		{dep, func() {
			syncLabels(dep, labels)
			fingerprint := podCert
			if fingerprint == "" {
				fingerprint = dep.Spec.Template.Annotations[annotationServingCertificate]
			}
			want := desiredDeployment(rev, release.ControlPlaneImage, injectArgs, fingerprint)
			if dep.Spec.Selector == nil { // immutable once created
				dep.Spec.Selector = want.Selector
			}
			syncTo(&dep.Spec.Replicas, want.Replicas)
			syncTo(&dep.Spec.Template, want.Template)
		}},
		{pdb, func() {
			syncLabels(pdb, labels)
			want := desiredPDB(rev)
			syncTo(&pdb.Spec.MaxUnavailable, want.MaxUnavailable)
			syncTo(&pdb.Spec.Selector, want.Selector)
		}},
	}
	for _, s := range steps {
		if s.obj == dep && serving.fingerprint == "" {
			// Pods could not start without the Secret anyway; creating the Deployment before
			// the certificate exists would roll it a second time once the fingerprint is known.
			if err := r.Get(ctx, client.ObjectKeyFromObject(dep), dep); apierrors.IsNotFound(err) {
				continue
			} else if err != nil {
				return fmt.Errorf("reading Deployment %s/%s: %w", ns, name, err)
			}
		}
		err := ensure(ctx, r.Client, r.APIReader, scheme, rev, s.obj, s.sync)
		if s.obj == role && apierrors.IsForbidden(err) {
			return &SignerNotGrantedError{Signer: signerName(rev), Err: err}
		}
		if err != nil {
			return err
		}
	}

	missing, err := r.certManager.check(ctx)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return errors.New(missingMessage(missing))
	}
	cert := &cmapi.Certificate{ObjectMeta: meta()}
	if err := ensure(ctx, r.Client, r.APIReader, scheme, rev, cert, func() {
		syncLabels(cert, labels)
		syncTo(&cert.Spec, desiredServingCertificate(rev))
	}); err != nil {
		return err
	}

	// The webhook configuration waits for the serving certificate: without its CA the API
	// server could not call the webhook, and with failurePolicy Fail no meshed pod would start.
	if len(serving.ca) == 0 {
		return nil
	}
	excluded, err := neverMeshed(ctx, r.APIReader, rev.Spec.Namespace, r.OperatorNamespace)
	if err != nil {
		return err
	}
	// Namespaces move to the active revision; a revision that injected them keeps its hooks
	// until the active one's webhook configuration carries them, so no pod falls in between.
	active := mesh.Status.ActiveRevision == rev.Name
	handingOver := false
	if !active && mesh.Status.ActiveRevision != "" {
		if handingOver, err = r.awaitsNamespaceHooks(ctx, mesh.Status.ActiveRevision); err != nil {
			return err
		}
	}
	mwc = &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: injectorName(rev)}}
	return ensure(ctx, r.Client, r.APIReader, scheme, rev, mwc, func() {
		syncLabels(mwc, labels)
		injectsNamespaces := active || (handingOver && hasNamespaceHooks(mwc))
		// Every root that may have signed a certificate a control-plane pod still serves stays
		// trusted until the Deployment runs only pods started with the current certificate.
		allServeCurrent := rolledOut(dep) && dep.Spec.Template.Annotations[annotationServingCertificate] == serving.fingerprint
		bundle := webhookCABundle(serving.ca, liveCABundle(mwc), allServeCurrent)
		syncTo(&mwc.Webhooks, desiredInjectorWebhooks(&mesh, rev, injectsNamespaces, excluded, bundle))
	})
}

// observeAvailability sets Available and CertificatesReady from the Deployment and the serving
// Certificate, naming the object at fault.
func (r *MeshRevisionReconciler) observeAvailability(ctx context.Context, rev *meshv1.MeshRevision, applied bool) error {
	gen, conds := rev.Generation, &rev.Status.Conditions
	key := client.ObjectKey{Namespace: rev.Spec.Namespace, Name: controlPlaneName(rev)}

	var dep appsv1.Deployment
	if err := r.Get(ctx, key, &dep); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading Deployment %s: %w", key, err)
	}
	rev.Status.ReadyReplicas = dep.Status.ReadyReplicas
	// The release the control plane runs: the spec's once every pod runs the template with its
	// image (an InPlace upgrade changes the version of a running revision).
	if release, err := r.Versions.Lookup(rev.Spec.Version); err == nil && applied && rolledOut(&dep) &&
		runsImage(&dep, release.ControlPlaneImage) {
		rev.Status.Version = rev.Spec.Version
	}
	if ok, msg := deploymentAvailability(&dep, key); ok {
		conditions.Set(conds, gen, meshv1.ConditionAvailable, metav1.ConditionTrue, meshv1.ReasonAsExpected, "%s", msg)
	} else {
		conditions.Set(conds, gen, meshv1.ConditionAvailable, metav1.ConditionFalse, meshv1.ReasonDeploymentUnavailable, "%s", msg)
	}

	// Injection is judged by what the API server would do with a pod now, which does not
	// depend on cert-manager being up: a configured webhook with a CA, and a ready endpoint
	// behind its Service.
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	mwcKey := client.ObjectKey{Name: injectorName(rev)}
	switch err := r.Get(ctx, mwcKey, &mwc); {
	case client.IgnoreNotFound(err) != nil:
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", mwcKey.Name, err)
	case err != nil || len(liveCABundle(&mwc)) == 0:
		conditions.Set(conds, gen, meshv1.ConditionInjectionReady, metav1.ConditionFalse, meshv1.ReasonCertificateNotReady,
			"MutatingWebhookConfiguration %s waits for the serving certificate in Secret %s", mwcKey.Name, key)
	default:
		serving, msg, err := r.webhookEndpointsReady(ctx, key)
		switch {
		case err != nil:
			return err
		case serving:
			conditions.Set(conds, gen, meshv1.ConditionInjectionReady, metav1.ConditionTrue, meshv1.ReasonAsExpected,
				"MutatingWebhookConfiguration %s routes pod creation to Service %s: %s", mwcKey.Name, key, msg)
		default:
			conditions.Set(conds, gen, meshv1.ConditionInjectionReady, metav1.ConditionFalse, meshv1.ReasonWebhookNotServing,
				"MutatingWebhookConfiguration %s routes pod creation to Service %s, but %s", mwcKey.Name, key, msg)
		}
	}

	if missing, err := r.certManager.missing(ctx); err != nil {
		return err
	} else if len(missing) > 0 {
		conditions.Set(conds, gen, meshv1.ConditionCertificatesReady, metav1.ConditionFalse,
			meshv1.ReasonCertManagerMissing, "%s", missingMessage(missing))
		return nil
	}

	var cert cmapi.Certificate
	if err := r.Get(ctx, key, &cert); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("reading Certificate %s: %w", key, err)
	}
	if ok, msg := certificateReady(&cert); ok {
		conditions.Set(conds, gen, meshv1.ConditionCertificatesReady, metav1.ConditionTrue, meshv1.ReasonAsExpected,
			"serving Certificate %s is Ready", key)
	} else {
		conditions.Set(conds, gen, meshv1.ConditionCertificatesReady, metav1.ConditionFalse, meshv1.ReasonCertificateNotReady,
			"serving Certificate %s is not Ready: %s", key, msg)
	}
	return nil
}

// deploymentAvailability says whether a Deployment serves, and why not.
func deploymentAvailability(dep *appsv1.Deployment, key client.ObjectKey) (bool, string) {
	if dep.CreationTimestamp.IsZero() {
		return false, fmt.Sprintf("Deployment %s does not exist yet", key)
	}
	counts := fmt.Sprintf("Deployment %s has %d of %d replicas available", key, dep.Status.AvailableReplicas, ptr.Deref(dep.Spec.Replicas, 0))
	// A rollout or scale-up is normal work: the Deployment's own Available condition (its pods
	// within maxUnavailable) says whether it serves meanwhile.
	want := ptr.Deref(dep.Spec.Replicas, 1)
	if s := dep.Status; s.ObservedGeneration < dep.Generation || s.UpdatedReplicas < want || s.Replicas > want {
		counts += "; a rollout is in progress"
	}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue && dep.Status.AvailableReplicas > 0 {
			return true, counts
		}
	}
	return false, counts
}

// rolledOut says whether every pod of the Deployment runs its current template and is
// available, with no pod of an earlier template left.
func rolledOut(dep *appsv1.Deployment) bool {
	want := ptr.Deref(dep.Spec.Replicas, 1)
	s := dep.Status
	return !dep.CreationTimestamp.IsZero() && s.ObservedGeneration >= dep.Generation &&
		s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// runsImage says whether the Deployment's pod template runs the image.
func runsImage(dep *appsv1.Deployment, image string) bool {
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Image == image {
			return true
		}
	}
	return false
}

// certificateReady reads cert-manager's Ready condition of a Certificate.
func certificateReady(cert *cmapi.Certificate) (bool, string) {
	for _, c := range cert.Status.Conditions {
		if c.Type == cmapi.CertificateConditionReady {
			return c.Status == cmmeta.ConditionTrue, c.Message
		}
	}
	if cert.CreationTimestamp.IsZero() {
		return false, "it does not exist yet"
	}
	return false, "cert-manager has not reported on it yet"
}

// revisionsOf maps a Mesh event to all MeshRevisions.
func (r *MeshRevisionReconciler) revisionsOf(ctx context.Context, _ client.Object) []reconcile.Request {
	var list meshv1.MeshRevisionList
	if err := r.List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "listing MeshRevisions")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, rev := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rev)})
	}
	return reqs
}

func revisionOfLabel(_ context.Context, obj client.Object) []reconcile.Request {
	if name := obj.GetLabels()[meshv1.LabelRevision]; name != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return nil
}

// SetupWithManager registers the reconciler; watches on cert-manager kinds start once
// cert-manager is installed.
func (r *MeshRevisionReconciler) SetupWithManager(mgr ctrl.Manager, cm *certManagerDetector) error {
	r.certManager = cm
	c, err := ctrl.NewControllerManagedBy(mgr).
		For(&meshv1.MeshRevision{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&rbacv1.ClusterRole{}).
		Owns(&rbacv1.ClusterRoleBinding{}).
		// A revision hands its namespace hooks over once the active one's configuration has
		// them: any injector change concerns every revision.
		Watches(&admissionregistrationv1.MutatingWebhookConfiguration{}, handler.EnqueueRequestsFromMapFunc(r.revisionsOf)).
		// Ready endpoints behind the control plane's Service are what lets the webhook answer.
		// The EndpointSlice controller copies the Service's labels, knit.dev/rev among them.
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(revisionOfLabel)).
		// The Mesh's injection settings and active revision shape every revision's objects.
		Watches(&meshv1.Mesh{}, handler.EnqueueRequestsFromMapFunc(r.revisionsOf)).
		Named("meshrevision").
		Build(r)
	if err != nil {
		return err
	}
	cm.whenInstalled(func() error {
		return c.Watch(source.Kind(mgr.GetCache(), &cmapi.Certificate{},
			handler.TypedEnqueueRequestForOwner[*cmapi.Certificate](mgr.GetScheme(), mgr.GetRESTMapper(),
				&meshv1.MeshRevision{}, handler.OnlyControllerOwner())))
	})
	return nil
}
