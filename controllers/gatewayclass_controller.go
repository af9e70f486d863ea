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
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/internal/gateway"
)

// GatewayClassReconciler installs the GatewayClass "knit" (and puts it back when deleted) and
// accepts every GatewayClass whose controllerName is knit's.
type GatewayClassReconciler struct {
	client.Client
}

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gatewayclasses/status,verbs=patch

// Reconcile accepts a class of knit's, or creates the class "knit" when it is missing.
func (r *GatewayClassReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var class gatewayv1.GatewayClass
	err := r.Get(ctx, req.NamespacedName, &class)
	if apierrors.IsNotFound(err) && req.Name == gateway.ClassName {
		return ctrl.Result{}, r.install(ctx)
	}
	if err != nil || class.Spec.ControllerName != gateway.ControllerName {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := class.DeepCopy()
	conditions.Set(&class.Status.Conditions, class.Generation, string(gatewayv1.GatewayClassConditionStatusAccepted),
		metav1.ConditionTrue, string(gatewayv1.GatewayClassReasonAccepted), "knit runs Gateways of this class")
	if equality.Semantic.DeepEqual(before.Status, class.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, &class, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of GatewayClass %s: %w", class.Name, err)
	}
	return ctrl.Result{}, nil
}

// install creates the GatewayClass "knit". It is the cluster's, not the Mesh's: Gateways of
// the class outlive a Mesh being deleted and made again.
func (r *GatewayClassReconciler) install(ctx context.Context) error {
	class := &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: gateway.ClassName, Labels: map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue}},
		Spec: gatewayv1.GatewayClassSpec{
			ControllerName: gateway.ControllerName,
			Description:    ptrTo("knit-proxy gateways run by the knit operator"),
		},
	}
	if err := r.Create(ctx, class); client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("creating GatewayClass %s: %w", gateway.ClassName, err)
	}
	log.FromContext(ctx).Info("installed GatewayClass", "name", gateway.ClassName)
	return nil
}

// SetupWithManager watches GatewayClasses, and installs "knit" once the manager leads.
func (r *GatewayClassReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// Retried until it succeeds: no event would bring the missing class to Reconcile.
	installed := manager.RunnableFunc(func(ctx context.Context) error {
		_ = wait.PollUntilContextCancel(ctx, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			if err := r.install(ctx); err != nil {
				log.FromContext(ctx).Error(err, "installing the GatewayClass; retrying")
				return false, nil
			}
			return true, nil
		})
		return nil
	})
	if err := mgr.Add(installed); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).For(&gatewayv1.GatewayClass{}).Named("gatewayclass").Complete(r)
}

func ptrTo[T any](v T) *T { return &v }
