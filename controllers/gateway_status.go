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
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/internal/conditions"
	"github.com/knit-mesh/knit/internal/gateway"
)

// countAttachedRoutes counts, per listener, the HTTPRoutes and GRPCRoutes attached to it, with
// the same rules the control plane uses to attach them (gateway.Attach).
func (r *GatewayReconciler) countAttachedRoutes(ctx context.Context, st *gatewayState) error {
	st.attached = make([]int32, len(st.listeners))
	gw := st.gw
	nsLabels := func(name string) map[string]string {
		var ns corev1.Namespace
		if err := r.Get(ctx, client.ObjectKey{Name: name}, &ns); err != nil {
			return nil
		}
		return ns.Labels
	}
	count := func(kind, ns string, refs []gatewayv1.ParentReference, hostnames []gatewayv1.Hostname) {
		seen := map[int]bool{}
		for _, ref := range refs {
			if key, ok := gatewayRef(ref, ns); !ok || key != client.ObjectKeyFromObject(gw) {
				continue
			}
			for _, i := range gateway.Attach(gw, st.listeners, ref, kind, ns, hostnames, nsLabels).Counted {
				if !seen[i] {
					seen[i] = true
					st.attached[i]++
				}
			}
		}
	}
	var httpRoutes gatewayv1.HTTPRouteList
	if err := r.List(ctx, &httpRoutes); err != nil {
		return fmt.Errorf("listing HTTPRoutes: %w", err)
	}
	for _, rt := range httpRoutes.Items {
		count("HTTPRoute", rt.Namespace, rt.Spec.ParentRefs, rt.Spec.Hostnames)
	}
	var grpcRoutes gatewayv1.GRPCRouteList
	if err := r.List(ctx, &grpcRoutes); err != nil {
		return fmt.Errorf("listing GRPCRoutes: %w", err)
	}
	for _, rt := range grpcRoutes.Items {
		count("GRPCRoute", rt.Namespace, rt.Spec.ParentRefs, rt.Spec.Hostnames)
	}
	return nil
}

// computeGatewayStatus writes Accepted, Programmed, the addresses and every listener's status.
func computeGatewayStatus(st *gatewayState) {
	gw := st.gw
	gen := gw.Generation
	s := &gw.Status
	set := func(conds *[]metav1.Condition, t, status, reason, format string, args ...any) {
		conditions.Set(conds, gen, t, metav1.ConditionStatus(status), reason, format, args...)
	}
	var invalid []string
	for _, l := range st.listeners {
		if !l.Served() {
			invalid = append(invalid, string(l.Name))
		}
	}
	switch {
	case st.invalidReason != "":
		set(&s.Conditions, string(gatewayv1.GatewayConditionAccepted), "False", st.invalidReason, "%s", st.invalidMessage)
	case len(invalid) > 0:
		set(&s.Conditions, string(gatewayv1.GatewayConditionAccepted), "True", string(gatewayv1.GatewayReasonListenersNotValid),
			"accepted, but these listeners cannot be served: %s; see status.listeners", strings.Join(invalid, ", "))
	default:
		set(&s.Conditions, string(gatewayv1.GatewayConditionAccepted), "True", string(gatewayv1.GatewayReasonAccepted), "accepted by knit")
	}

	s.Addresses = gatewayAddresses(st.service)
	programmed, reason, msg := gatewayProgrammed(st)
	status := "False"
	if programmed {
		status = "True"
	}
	set(&s.Conditions, string(gatewayv1.GatewayConditionProgrammed), status, reason, "%s", msg)

	previous := s.Listeners
	s.Listeners = make([]gatewayv1.ListenerStatus, len(st.listeners))
	for i, l := range st.listeners {
		ls := gatewayv1.ListenerStatus{Name: l.Name, SupportedKinds: l.SupportedKinds}
		if ls.SupportedKinds == nil {
			ls.SupportedKinds = []gatewayv1.RouteGroupKind{}
		}
		if st.attached != nil {
			ls.AttachedRoutes = st.attached[i]
		}
		if old := findListenerStatus(previous, l.Name); old != nil {
			ls.Conditions = old.Conditions
		}
		accepted, resolved, conflicted := "True", "True", "False"
		acceptedReason, resolvedReason, conflictedReason := string(gatewayv1.ListenerReasonAccepted), string(gatewayv1.ListenerReasonResolvedRefs), string(gatewayv1.ListenerReasonNoConflicts)
		acceptedMsg, resolvedMsg, conflictedMsg := "accepted", "every reference resolved", "no conflicts"
		var pending *gateway.ListenerProblem
		for _, p := range l.Problems {
			switch p.Condition {
			case gatewayv1.ListenerConditionAccepted:
				accepted, acceptedReason, acceptedMsg = "False", string(p.Reason), p.Message
			case gatewayv1.ListenerConditionResolvedRefs:
				resolved, resolvedReason, resolvedMsg = "False", string(p.Reason), p.Message
			case gatewayv1.ListenerConditionConflicted:
				conflicted, conflictedReason, conflictedMsg = "True", string(p.Reason), p.Message
				accepted, acceptedReason, acceptedMsg = "False", string(p.Reason), p.Message
			case gatewayv1.ListenerConditionProgrammed: // certificates not judged yet
				pending = &p
			}
		}
		set(&ls.Conditions, string(gatewayv1.ListenerConditionAccepted), accepted, acceptedReason, "%s", acceptedMsg)
		set(&ls.Conditions, string(gatewayv1.ListenerConditionResolvedRefs), resolved, resolvedReason, "%s", resolvedMsg)
		set(&ls.Conditions, string(gatewayv1.ListenerConditionConflicted), conflicted, conflictedReason, "%s", conflictedMsg)
		switch {
		case pending != nil && len(l.Problems) == 1:
			set(&ls.Conditions, string(gatewayv1.ListenerConditionProgrammed), "False", string(pending.Reason), "%s", pending.Message)
		case !l.Served():
			set(&ls.Conditions, string(gatewayv1.ListenerConditionProgrammed), "False", string(gatewayv1.ListenerReasonInvalid), "the listener cannot be served")
		case programmed:
			set(&ls.Conditions, string(gatewayv1.ListenerConditionProgrammed), "True", string(gatewayv1.ListenerReasonProgrammed), "served by the gateway's proxies")
		default:
			set(&ls.Conditions, string(gatewayv1.ListenerConditionProgrammed), "False", string(gatewayv1.ListenerReasonPending), "%s", msg)
		}
		s.Listeners[i] = ls
	}
}

// gatewayProgrammed: the Gateway is Programmed once its Service has an address and at least one
// proxy of its Deployment is available (a proxy is Ready only with configuration from the
// control plane).
func gatewayProgrammed(st *gatewayState) (bool, string, string) {
	switch {
	case st.invalidReason != "":
		return false, string(gatewayv1.GatewayReasonInvalid), "not accepted: " + st.invalidMessage
	case st.pending != "":
		return false, string(gatewayv1.GatewayReasonPending), st.pending
	case st.deployment == nil || st.service == nil:
		return false, string(gatewayv1.GatewayReasonPending), "the gateway's Deployment and Service are not created yet"
	case len(st.gw.Status.Addresses) == 0:
		return false, string(gatewayv1.GatewayReasonAddressNotAssigned), fmt.Sprintf("Service %s has no address yet", st.service.Name)
	case st.deployment.Status.AvailableReplicas == 0:
		return false, string(gatewayv1.GatewayReasonPending), fmt.Sprintf("Deployment %s has no available proxy yet", st.deployment.Name)
	}
	return true, string(gatewayv1.GatewayReasonProgrammed), fmt.Sprintf("%d of %d proxies of Deployment %s available",
		st.deployment.Status.AvailableReplicas, ptr.Deref(st.deployment.Spec.Replicas, 0), st.deployment.Name)
}

// gatewayAddresses are the Service's load-balancer addresses when it has any, else its
// cluster IPs (reachable in the cluster, and on the local development cluster from the host).
func gatewayAddresses(svc *corev1.Service) []gatewayv1.GatewayStatusAddress {
	if svc == nil {
		return nil
	}
	ip, host := ptr.To(gatewayv1.IPAddressType), ptr.To(gatewayv1.HostnameAddressType)
	var out []gatewayv1.GatewayStatusAddress
	for _, in := range svc.Status.LoadBalancer.Ingress {
		switch {
		case in.IP != "":
			out = append(out, gatewayv1.GatewayStatusAddress{Type: ip, Value: in.IP})
		case in.Hostname != "":
			out = append(out, gatewayv1.GatewayStatusAddress{Type: host, Value: in.Hostname})
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, cip := range svc.Spec.ClusterIPs {
		if cip != "" && cip != corev1.ClusterIPNone {
			out = append(out, gatewayv1.GatewayStatusAddress{Type: ip, Value: cip})
		}
	}
	return out
}

func findListenerStatus(listeners []gatewayv1.ListenerStatus, name gatewayv1.SectionName) *gatewayv1.ListenerStatus {
	for i := range listeners {
		if listeners[i].Name == name {
			return &listeners[i]
		}
	}
	return nil
}
