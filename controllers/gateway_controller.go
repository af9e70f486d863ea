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
	"cmp"
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/gateway"
	"github.com/knit-mesh/knit/internal/versions"
)

// GatewayReconciler runs every Gateway whose GatewayClass is served by knit
// (gateway.ControllerName): a knit-proxy Deployment in gateway mode, its Service,
// ServiceAccount, PodDisruptionBudget and, when the parameters ask, a HorizontalPodAutoscaler,
// all owned by the Gateway (GEP-1762's automated deployment); and the Gateway's status. The
// proxies get their listeners and routes from the active revision's control plane over xDS.
type GatewayReconciler struct {
	client.Client
	// APIReader reads parameter ConfigMaps, which the cache holds only when labelled knit's.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Versions  versions.Table
}

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways/status,verbs=patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=serviceaccounts;services,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;delete

// Reconcile brings a Gateway's objects in line with its spec and parameters, then writes its status.
func (r *GatewayReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var gw gatewayv1.Gateway
	if err := r.Get(ctx, req.NamespacedName, &gw); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !gw.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // its objects go with it (owner references)
	}
	ours, err := r.classIsOurs(ctx, string(gw.Spec.GatewayClassName))
	if err != nil || !ours {
		return ctrl.Result{}, err
	}
	before := gw.DeepCopy()
	// HTTPS listeners' certificateRefs are judged by the control plane, which reads Secrets.
	st := &gatewayState{gw: &gw, listeners: gateway.Listeners(&gw, gateway.CertificatesFromAnnotation(&gw))}
	r.run(ctx, st)
	if err := r.countAttachedRoutes(ctx, st); err != nil {
		st.errs = append(st.errs, err)
	}
	computeGatewayStatus(st)
	if !equality.Semantic.DeepEqual(before.Status, gw.Status) {
		if err := r.Status().Patch(ctx, &gw, client.MergeFrom(before)); err != nil {
			if apierrors.IsNotFound(err) {
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, fmt.Errorf("patching status of Gateway %s/%s: %w", gw.Namespace, gw.Name, err)
		}
		r.recordGatewayTransitions(before, &gw)
	}
	if err := errors.Join(st.errs...); err != nil {
		log.FromContext(ctx).Error(err, "gateway reconcile incomplete")
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// gatewayState is what one reconcile of a Gateway found.
type gatewayState struct {
	gw        *gatewayv1.Gateway
	listeners []gateway.Listener
	// invalid says why the Gateway is not accepted (a condition reason and message), if it is not.
	invalidReason, invalidMessage string
	// pending says why the proxies cannot run yet (no mesh control plane), if they cannot.
	pending    string
	deployment *appsv1.Deployment
	service    *corev1.Service
	attached   []int32 // per listener
	errs       []error
}

// run decides whether the Gateway can run and, if so, ensures its objects.
func (r *GatewayReconciler) run(ctx context.Context, st *gatewayState) {
	gw := st.gw
	if len(gw.Spec.Addresses) > 0 {
		st.invalidReason = string(gatewayv1.GatewayReasonUnsupportedAddress)
		st.invalidMessage = "spec.addresses is not supported: a knit Gateway's address is its Service's"
		return
	}
	params, err := r.parameters(ctx, gw)
	if err != nil {
		st.invalidReason, st.invalidMessage = string(gatewayv1.GatewayReasonInvalidParameters), err.Error()
		return
	}
	ports := servedPorts(st.listeners)
	if len(ports) == 0 {
		st.invalidReason = string(gatewayv1.GatewayReasonListenersNotValid)
		st.invalidMessage = "no listener can be served; see status.listeners"
		return
	}
	rt, pending, err := r.runtime(ctx)
	if err != nil {
		st.errs = append(st.errs, err)
		return
	}
	if pending != "" {
		st.pending = pending
		return
	}
	name := gateway.ResourceName(gw.Name)
	meta := func() metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: gw.Namespace} }
	labels := gatewayLabels(gw)
	sa := &corev1.ServiceAccount{ObjectMeta: meta()}
	dep := &appsv1.Deployment{ObjectMeta: meta()}
	svc := &corev1.Service{ObjectMeta: meta()}
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: meta()}
	for _, o := range []struct {
		obj  client.Object
		sync func()
	}{
		{sa, func() { syncLabels(sa, labels) }},
		{dep, func() {
			syncLabels(dep, labels)
			want := desiredGatewayDeployment(gw, rt, params, ports)
			if params.Autoscale != nil {
				want.Replicas = dep.Spec.Replicas // the HPA's to set
			}
			syncTo(&dep.Spec, want)
		}},
		{svc, func() {
			syncLabels(svc, labels)
			want := desiredGatewayService(gw, params, ports)
			keepNodePorts(&want, &svc.Spec)
			syncTo(&svc.Spec, want)
		}},
		{pdb, func() { syncLabels(pdb, labels); syncTo(&pdb.Spec, desiredGatewayPDB(gw)) }},
	} {
		if err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), gw, o.obj, o.sync); err != nil {
			st.errs = append(st.errs, err)
		}
	}
	st.deployment, st.service = dep, svc
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: meta()}
	if params.Autoscale != nil {
		err = ensure(ctx, r.Client, r.APIReader, r.Scheme(), gw, hpa, func() {
			syncLabels(hpa, labels)
			syncTo(&hpa.Spec, desiredGatewayHPA(gw, *params.Autoscale))
		})
	} else {
		err = r.deleteOwned(ctx, gw, hpa)
	}
	if err != nil {
		st.errs = append(st.errs, err)
	}
}

// deleteOwned deletes obj (by name) if the Gateway controls it.
func (r *GatewayReconciler) deleteOwned(ctx context.Context, gw *gatewayv1.Gateway, obj client.Object) error {
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, gw) {
		return nil
	}
	if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %s %s: %w", kindOf(obj, r.Scheme()), client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

// parameters reads the Gateway's parameters ConfigMap, or returns the defaults without one.
func (r *GatewayReconciler) parameters(ctx context.Context, gw *gatewayv1.Gateway) (gatewayParameters, error) {
	name, err := parametersConfigMap(gw)
	if err != nil || name == "" {
		return defaultGatewayParameters(), err
	}
	var cm corev1.ConfigMap
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: gw.Namespace, Name: name}, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return gatewayParameters{}, fmt.Errorf("spec.infrastructure.parametersRef: ConfigMap %s/%s does not exist", gw.Namespace, name)
		}
		return gatewayParameters{}, fmt.Errorf("reading parameters ConfigMap %s/%s: %w", gw.Namespace, name, err)
	}
	p, err := parseGatewayParameters(cm.Data)
	if err != nil {
		return p, fmt.Errorf("parameters ConfigMap %s/%s: %w", gw.Namespace, name, err)
	}
	return p, nil
}

// runtime finds the mesh's active revision; pending says why there is none yet.
func (r *GatewayReconciler) runtime(ctx context.Context) (rt gatewayRuntime, pending string, err error) {
	var mesh meshv1.Mesh
	if err := r.Get(ctx, client.ObjectKey{Name: meshv1.MeshName}, &mesh); err != nil {
		if apierrors.IsNotFound(err) {
			return rt, "no Mesh exists: gateway proxies get their configuration from the mesh's control plane", nil
		}
		return rt, "", fmt.Errorf("reading Mesh %s: %w", meshv1.MeshName, err)
	}
	if mesh.Status.ActiveRevision == "" {
		return rt, fmt.Sprintf("Mesh %s has no active revision yet", mesh.Name), nil
	}
	var rev meshv1.MeshRevision
	if err := r.Get(ctx, client.ObjectKey{Name: mesh.Status.ActiveRevision}, &rev); err != nil {
		if apierrors.IsNotFound(err) {
			return rt, fmt.Sprintf("MeshRevision %s does not exist yet", mesh.Status.ActiveRevision), nil
		}
		return rt, "", fmt.Errorf("reading MeshRevision %s: %w", mesh.Status.ActiveRevision, err)
	}
	release, err := r.Versions.Lookup(rev.Spec.Version)
	if err != nil {
		return rt, fmt.Sprintf("MeshRevision %s runs %s, which this operator cannot run: %v", rev.Name, rev.Spec.Version, err), nil
	}
	return gatewayRuntime{
		Revision:      rev.Name,
		ProxyImage:    release.ProxyImage,
		ControlPlane:  fmt.Sprintf("%s.%s.svc:%d", controlPlaneName(&rev), rev.Spec.Namespace, portXDS),
		TrustDomain:   rev.Spec.TrustDomain,
		MTLSMode:      cmp.Or(mesh.Spec.MTLS.Mode, meshv1.MTLSPermissive),
		Observability: meshObservability(&mesh),
	}, "", nil
}

// classIsOurs says whether the named GatewayClass is served by knit.
func (r *GatewayReconciler) classIsOurs(ctx context.Context, name string) (bool, error) {
	var class gatewayv1.GatewayClass
	if err := r.Get(ctx, client.ObjectKey{Name: name}, &class); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return class.Spec.ControllerName == gateway.ControllerName, nil
}

// recordGatewayTransitions emits an event when Accepted or Programmed changes.
func (r *GatewayReconciler) recordGatewayTransitions(before, after *gatewayv1.Gateway) {
	if r.Recorder == nil {
		return
	}
	for _, t := range []gatewayv1.GatewayConditionType{gatewayv1.GatewayConditionAccepted, gatewayv1.GatewayConditionProgrammed} {
		c := meta.FindStatusCondition(after.Status.Conditions, string(t))
		if c == nil {
			continue
		}
		old := meta.FindStatusCondition(before.Status.Conditions, string(t))
		if old != nil && old.Status == c.Status && old.Reason == c.Reason {
			continue
		}
		kind := corev1.EventTypeNormal
		if c.Status != metav1.ConditionTrue {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(after, nil, kind, c.Reason, eventAction(*c), "%s is %s: %s", c.Type, c.Status, c.Message)
	}
}

// SetupWithManager watches Gateways and everything their state depends on.
func (r *GatewayReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Versions.Versions == nil {
		r.Versions = versions.Default
	}
	allGateways := handler.EnqueueRequestsFromMapFunc(r.allGateways)
	return ctrl.NewControllerManagedBy(mgr).
		// Not its own status writes; an annotation change re-reads an unwatched parameters ConfigMap.
		For(&gatewayv1.Gateway{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		// A class changing hands; the mesh's active revision (the proxies' image and control plane).
		Watches(&gatewayv1.GatewayClass{}, allGateways).
		Watches(&meshv1.Mesh{}, allGateways).
		// Parameters ConfigMaps the cache holds (knit's own, made for spec.gateways).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.gatewaysWithParameters), builder.WithPredicates(ourLabels)).
		// Routes change the listeners' attachedRoutes, and so do namespace labels where a listener
		// allows routes from the namespaces a selector picks.
		Watches(&gatewayv1.HTTPRoute{}, handler.EnqueueRequestsFromMapFunc(r.routeParents)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.selectorGateways), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&gatewayv1.GRPCRoute{}, handler.EnqueueRequestsFromMapFunc(r.routeParents)).
		Named("gateway").
		Complete(r)
}

func (r *GatewayReconciler) allGateways(ctx context.Context, _ client.Object) []reconcile.Request {
	var list gatewayv1.GatewayList
	if err := r.List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "listing Gateways")
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, gw := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&gw)})
	}
	return out
}

// selectorGateways are the Gateways with a listener that allows routes from a namespace selector.
func (r *GatewayReconciler) selectorGateways(ctx context.Context, _ client.Object) []reconcile.Request {
	var list gatewayv1.GatewayList
	if err := r.List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "listing Gateways")
		return nil
	}
	var out []reconcile.Request
	for _, gw := range list.Items {
		for _, l := range gw.Spec.Listeners {
			if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil && l.AllowedRoutes.Namespaces.From != nil &&
				*l.AllowedRoutes.Namespaces.From == gatewayv1.NamespacesFromSelector {
				out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&gw)})
				break
			}
		}
	}
	return out
}

func (r *GatewayReconciler) gatewaysWithParameters(ctx context.Context, cm client.Object) []reconcile.Request {
	var list gatewayv1.GatewayList
	if err := r.List(ctx, &list, client.InNamespace(cm.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "listing Gateways")
		return nil
	}
	var out []reconcile.Request
	for _, gw := range list.Items {
		if name, _ := parametersConfigMap(&gw); name == cm.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&gw)})
		}
	}
	return out
}

func (r *GatewayReconciler) routeParents(_ context.Context, obj client.Object) []reconcile.Request {
	var refs []gatewayv1.ParentReference
	switch route := obj.(type) {
	case *gatewayv1.HTTPRoute:
		refs = route.Spec.ParentRefs
	case *gatewayv1.GRPCRoute:
		refs = route.Spec.ParentRefs
	}
	var out []reconcile.Request
	for _, ref := range refs {
		if key, ok := gatewayRef(ref, obj.GetNamespace()); ok {
			out = append(out, reconcile.Request{NamespacedName: key})
		}
	}
	return out
}

// gatewayRef returns the Gateway a parentRef names, if it names one.
func gatewayRef(ref gatewayv1.ParentReference, routeNamespace string) (client.ObjectKey, bool) {
	ns, name, ok := gateway.ParentGateway(ref, routeNamespace)
	return client.ObjectKey{Namespace: ns, Name: name}, ok
}
