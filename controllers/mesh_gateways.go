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
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/internal/gateway"
)

// componentMeshGateway labels the Gateways (and their parameters ConfigMaps) that the Mesh makes
// for spec.gateways, so entries that are removed can be found and deleted.
const componentMeshGateway = "mesh-gateway"

// gatewayParametersName names the parameters ConfigMap of a spec.gateways entry.
func gatewayParametersName(name string) string { return gateway.ResourceName(name) + "-parameters" }

// reconcileGateways makes, for every spec.gateways entry, a Gateway of class knit and its
// parameters ConfigMap, both owned by the Mesh; the gateway controller runs them like any other
// Gateway. Those of removed entries are deleted. Without Gateway API's CRDs it does nothing
// (GatewaysReady says so).
func (r *MeshReconciler) reconcileGateways(ctx context.Context, st *meshState) {
	mesh := st.mesh
	if !r.gatewayAPI {
		return
	}
	labels := map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelComponent: componentMeshGateway}
	want := map[client.ObjectKey]bool{}
	for _, g := range mesh.Spec.Gateways {
		want[client.ObjectKey{Namespace: g.Namespace, Name: g.Name}] = true
		params, err := meshGatewayParameters(g)
		if err != nil {
			st.fail(fmt.Errorf("spec.gateways %s/%s: %w", g.Namespace, g.Name, err))
			continue
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: gatewayParametersName(g.Name), Namespace: g.Namespace}}
		if err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, cm, func() {
			syncLabels(cm, labels)
			syncTo(&cm.Data, params)
		}); err != nil {
			st.fail(err)
			continue
		}
		gw := &gatewayv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: g.Name, Namespace: g.Namespace}}
		if err := ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, gw, func() {
			syncLabels(gw, labels)
			syncTo(&gw.Spec, meshGatewaySpec(g))
		}); err != nil {
			st.fail(err)
		}
	}

	var gateways gatewayv1.GatewayList
	if err := r.List(ctx, &gateways, client.MatchingLabels(labels)); err != nil {
		st.fail(fmt.Errorf("listing the Mesh's Gateways: %w", err))
		return
	}
	for i := range gateways.Items {
		gw := &gateways.Items[i]
		if want[client.ObjectKeyFromObject(gw)] || !metav1.IsControlledBy(gw, mesh) {
			continue
		}
		if err := r.Delete(ctx, gw); client.IgnoreNotFound(err) != nil {
			st.fail(fmt.Errorf("deleting Gateway %s/%s of a removed spec.gateways entry: %w", gw.Namespace, gw.Name, err))
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: gatewayParametersName(gw.Name), Namespace: gw.Namespace}}
		if err := r.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
			st.fail(fmt.Errorf("deleting ConfigMap %s/%s of a removed spec.gateways entry: %w", cm.Namespace, cm.Name, err))
		}
	}
}

// meshGatewaySpec is the Gateway a spec.gateways entry stands for: one listener per port, named
// after it, accepting routes from every namespace (a mesh's ingress), with the entry's
// replicas, resources and service type as parameters.
func meshGatewaySpec(g meshv1.GatewaySpec) gatewayv1.GatewaySpec {
	spec := gatewayv1.GatewaySpec{
		GatewayClassName: gateway.ClassName,
		Infrastructure: &gatewayv1.GatewayInfrastructure{ParametersRef: &gatewayv1.LocalParametersReference{
			Group: "", Kind: "ConfigMap", Name: gatewayParametersName(g.Name),
		}},
	}
	for _, p := range g.Ports {
		spec.Listeners = append(spec.Listeners, gatewayv1.Listener{
			Name:          gatewayv1.SectionName(p.Name),
			Port:          gatewayv1.PortNumber(p.Port),
			Protocol:      gatewayv1.ProtocolType(p.Protocol),
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: ptrTo(gatewayv1.NamespacesFromAll)}},
		})
	}
	return spec
}

func meshGatewayParameters(g meshv1.GatewaySpec) (map[string]string, error) {
	resources, err := json.Marshal(g.Resources)
	if err != nil {
		return nil, fmt.Errorf("encoding resources: %w", err)
	}
	return map[string]string{
		ParamReplicas:    strconv.Itoa(int(max(g.Replicas, 1))),
		ParamServiceType: string(cmpOr(g.ServiceType, meshv1.GatewayServiceType(corev1.ServiceTypeLoadBalancer))),
		ParamResources:   string(resources),
	}, nil
}

func cmpOr[T comparable](v, fallback T) T {
	var zero T
	if v == zero {
		return fallback
	}
	return v
}

// gatewayNamespaces are the namespaces holding a Gateway of a knit class: their proxies need
// the trust bundle to verify the control plane.
func (r *MeshReconciler) gatewayNamespaces(ctx context.Context) ([]string, error) {
	gateways, err := r.knitGateways(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, gw := range gateways {
		if !slices.Contains(out, gw.Namespace) {
			out = append(out, gw.Namespace)
		}
	}
	return out, nil
}

// knitGateways lists the Gateways whose class is served by knit.
func (r *MeshReconciler) knitGateways(ctx context.Context) ([]gatewayv1.Gateway, error) {
	if !r.gatewayAPI {
		return nil, nil
	}
	var classes gatewayv1.GatewayClassList
	if err := r.List(ctx, &classes); err != nil {
		return nil, fmt.Errorf("listing GatewayClasses: %w", err)
	}
	ours := map[gatewayv1.ObjectName]bool{}
	for _, c := range classes.Items {
		ours[gatewayv1.ObjectName(c.Name)] = c.Spec.ControllerName == gateway.ControllerName
	}
	var list gatewayv1.GatewayList
	if err := r.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing Gateways: %w", err)
	}
	return slices.DeleteFunc(list.Items, func(gw gatewayv1.Gateway) bool { return !ours[gw.Spec.GatewayClassName] }), nil
}

// reportGateways sets GatewaysReady: True when every Gateway of a knit class (spec.gateways'
// among them) is Programmed, else False naming each that is not, with its reason.
func (r *MeshReconciler) reportGateways(ctx context.Context, st *meshState) {
	mesh := st.mesh
	set := func(status metav1.ConditionStatus, reason, format string, args ...any) {
		conditions.Set(&mesh.Status.Conditions, mesh.Generation, meshv1.ConditionGatewaysReady, status, reason, format, args...)
	}
	if !r.gatewayAPI {
		if len(mesh.Spec.Gateways) > 0 {
			set(metav1.ConditionFalse, meshv1.ReasonGatewayAPIMissing, "spec.gateways is set, but Gateway API's CRDs were not installed when the operator started: install them (standard channel, v1.6) and restart the operator")
			return
		}
		set(metav1.ConditionTrue, meshv1.ReasonAsExpected, "no gateways (Gateway API's CRDs are not installed)")
		return
	}
	gateways, err := r.knitGateways(ctx)
	if err != nil {
		st.fail(err)
		set(metav1.ConditionUnknown, meshv1.ReasonReconcileFailed, "%v", err)
		return
	}
	var notReady, ready []string
	found := map[client.ObjectKey]bool{}
	for _, gw := range gateways {
		key := client.ObjectKeyFromObject(&gw)
		found[key] = true
		c := meta.FindStatusCondition(gw.Status.Conditions, string(gatewayv1.GatewayConditionProgrammed))
		switch {
		case c == nil:
			notReady = append(notReady, fmt.Sprintf("Gateway %s: not reconciled yet", key))
		case c.Status != metav1.ConditionTrue || c.ObservedGeneration != gw.Generation:
			notReady = append(notReady, fmt.Sprintf("Gateway %s: %s: %s", key, c.Reason, c.Message))
		default:
			ready = append(ready, key.String())
		}
	}
	for _, g := range mesh.Spec.Gateways {
		if key := (client.ObjectKey{Namespace: g.Namespace, Name: g.Name}); !found[key] {
			notReady = append(notReady, fmt.Sprintf("Gateway %s (spec.gateways): not created yet", key))
		}
	}
	switch {
	case len(notReady) > 0:
		set(metav1.ConditionFalse, meshv1.ReasonNotReady, "%s", strings.Join(notReady, "; "))
	case len(ready) == 0:
		set(metav1.ConditionTrue, meshv1.ReasonAsExpected, "no Gateways of class %s", gateway.ClassName)
	default:
		set(metav1.ConditionTrue, meshv1.ReasonAllReady, "Programmed: %s", strings.Join(ready, ", "))
	}
}
