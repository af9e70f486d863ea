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

// Package gateway holds what knit's gateway controller (in the operator) and its translation (in
// the control plane) must agree on: the class and controller names, the names of the objects
// that run a Gateway, and which of a Gateway's listeners knit can serve.
package gateway

import (
	"fmt"
	"slices"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

const (
	// ControllerName is the controllerName of GatewayClasses knit serves.
	ControllerName gatewayv1.GatewayController = "knit.dev/gateway-controller"
	// ClassName is the GatewayClass the operator installs.
	ClassName = "knit"
	// LabelGatewayName is Gateway API's label (GEP-1762) on the objects that run a Gateway.
	LabelGatewayName = "gateway.networking.k8s.io/gateway-name"
)

// Ports a gateway proxy keeps for itself; a listener on one of them is refused.
const (
	AdminPort      = 15000 // full admin, loopback only
	ProbePort      = 15020 // /ready, /live, /metrics for the kubelet and Prometheus
	reservedReason = "port %d is the gateway proxy's own (admin 15000, probes 15020)"
)

// ResourceName names the Deployment, Service, ServiceAccount, PodDisruptionBudget and
// HorizontalPodAutoscaler of a Gateway: "<gateway>-knit", as GEP-1762 recommends
// ("<gateway>-<class>"), so they do not collide with the workloads a Gateway routes to.
func ResourceName(gatewayName string) string {
	return gatewayName + "-" + ClassName
}

// Route kinds a knit gateway listener accepts.
var (
	HTTPRouteKind = gatewayv1.RouteGroupKind{Group: ptrTo(gatewayv1.Group(gatewayv1.GroupName)), Kind: "HTTPRoute"}
	GRPCRouteKind = gatewayv1.RouteGroupKind{Group: ptrTo(gatewayv1.Group(gatewayv1.GroupName)), Kind: "GRPCRoute"}
)

// ListenerProblem is why a listener cannot be served, as a Gateway API condition type and reason.
type ListenerProblem struct {
	// Condition is the listener condition that reports it: False for Accepted and ResolvedRefs,
	// True for Conflicted.
	Condition gatewayv1.ListenerConditionType
	Reason    gatewayv1.ListenerConditionReason
	Message   string
}

// Listener is what knit decided about one listener of a Gateway.
type Listener struct {
	gatewayv1.Listener
	// SupportedKinds are the route kinds that may attach.
	SupportedKinds []gatewayv1.RouteGroupKind
	// Problems, empty when the listener is served.
	Problems []ListenerProblem
}

// Served says whether the proxy serves the listener: accepted, not conflicted, refs resolved.
func (l *Listener) Served() bool { return len(l.Problems) == 0 }

// Exposed says whether the gateway's Deployment and Service open the listener's port: when it is
// served, and also when only its certificates keep it from being served (they may resolve at any
// moment; opening the port then would roll the gateway's pods).
func (l *Listener) Exposed() bool {
	for _, p := range l.Problems {
		certificate := p.Reason == gatewayv1.ListenerReasonInvalidCertificateRef || p.Reason == gatewayv1.ListenerReasonRefNotPermitted ||
			p.Condition == gatewayv1.ListenerConditionProgrammed
		if !certificate {
			return false
		}
	}
	return true
}

// Terminates says whether an HTTPS listener asks knit to terminate TLS (tls.mode Terminate, the
// default) with at least one certificateRef.
func Terminates(l gatewayv1.Listener) bool {
	return l.TLS != nil && (l.TLS.Mode == nil || *l.TLS.Mode == gatewayv1.TLSModeTerminate) && len(l.TLS.CertificateRefs) > 0
}

// CertificateCheck judges the certificateRefs of an HTTPS listener: nil when they resolve,
// else the problem (ResolvedRefs False, or Programmed False while the verdict is pending).
type CertificateCheck func(l gatewayv1.Listener) *ListenerProblem

// Listeners judges every listener of gw. HTTP is served, and HTTPS with tls.mode Terminate whose
// certificateRefs certs resolves (TLS, TCP, UDP and HTTPS Passthrough are refused with
// UnsupportedProtocol); two listeners on one port with different protocols are both
// ProtocolConflict, and with the same hostname both HostnameConflict.
func Listeners(gw *gatewayv1.Gateway, certs CertificateCheck) []Listener {
	out := make([]Listener, len(gw.Spec.Listeners))
	for i, l := range gw.Spec.Listeners {
		out[i] = Listener{Listener: l}
		cur := &out[i]
		switch {
		case l.Protocol == gatewayv1.HTTPProtocolType:
		case l.Protocol == gatewayv1.HTTPSProtocolType && Terminates(l):
			if p := certs(l); p != nil {
				cur.Problems = append(cur.Problems, *p)
			}
		case l.Protocol == gatewayv1.HTTPSProtocolType:
			cur.Problems = append(cur.Problems, ListenerProblem{gatewayv1.ListenerConditionAccepted, gatewayv1.ListenerReasonUnsupportedProtocol,
				"an HTTPS listener of a knit gateway terminates TLS: tls.mode must be Terminate, with certificateRefs"})
		default:
			cur.Problems = append(cur.Problems, ListenerProblem{gatewayv1.ListenerConditionAccepted, gatewayv1.ListenerReasonUnsupportedProtocol,
				fmt.Sprintf("protocol %s is not supported by knit gateways; only HTTP and HTTPS are", l.Protocol)})
		}
		if l.Port == AdminPort || l.Port == ProbePort {
			cur.Problems = append(cur.Problems, ListenerProblem{gatewayv1.ListenerConditionAccepted, gatewayv1.ListenerReasonPortUnavailable,
				fmt.Sprintf(reservedReason, l.Port)})
		}
		kinds, bad := supportedKinds(l)
		cur.SupportedKinds = kinds
		if len(bad) > 0 {
			cur.Problems = append(cur.Problems, ListenerProblem{gatewayv1.ListenerConditionResolvedRefs, gatewayv1.ListenerReasonInvalidRouteKinds,
				fmt.Sprintf("route kinds not supported: %v; knit gateways accept HTTPRoute and GRPCRoute", bad)})
		}
	}
	for i := range out {
		for j := range out {
			if i == j || out[i].Port != out[j].Port {
				continue
			}
			a, b := &out[i], &out[j]
			switch {
			case a.Protocol != b.Protocol:
				a.Problems = append(a.Problems, ListenerProblem{gatewayv1.ListenerConditionConflicted, gatewayv1.ListenerReasonProtocolConflict,
					fmt.Sprintf("listener %s uses port %d with protocol %s", b.Name, b.Port, b.Protocol)})
			case hostname(a.Hostname) == hostname(b.Hostname):
				a.Problems = append(a.Problems, ListenerProblem{gatewayv1.ListenerConditionConflicted, gatewayv1.ListenerReasonHostnameConflict,
					fmt.Sprintf("listener %s uses port %d with the same hostname %q", b.Name, b.Port, hostname(b.Hostname))})
			}
		}
	}
	return out
}

// supportedKinds returns the route kinds a listener accepts and those it asked for that knit
// does not support. Without allowedRoutes.kinds an HTTP listener, or an HTTPS one that terminates
// TLS, accepts HTTPRoute and GRPCRoute.
func supportedKinds(l gatewayv1.Listener) (ok []gatewayv1.RouteGroupKind, bad []string) {
	if l.AllowedRoutes == nil || len(l.AllowedRoutes.Kinds) == 0 {
		if l.Protocol == gatewayv1.HTTPProtocolType || (l.Protocol == gatewayv1.HTTPSProtocolType && Terminates(l)) {
			return []gatewayv1.RouteGroupKind{HTTPRouteKind, GRPCRouteKind}, nil
		}
		return nil, nil
	}
	for _, k := range l.AllowedRoutes.Kinds {
		group := gatewayv1.GroupName
		if k.Group != nil {
			group = string(*k.Group)
		}
		known := group == gatewayv1.GroupName && (k.Kind == HTTPRouteKind.Kind || k.Kind == GRPCRouteKind.Kind)
		if known && !slices.ContainsFunc(ok, func(o gatewayv1.RouteGroupKind) bool { return o.Kind == k.Kind }) {
			ok = append(ok, gatewayv1.RouteGroupKind{Group: ptrTo(gatewayv1.Group(group)), Kind: k.Kind})
		} else if !known {
			bad = append(bad, group+"/"+string(k.Kind))
		}
	}
	return ok, bad
}

func hostname(h *gatewayv1.Hostname) string {
	if h == nil {
		return ""
	}
	return string(*h)
}

func ptrTo[T any](v T) *T { return &v }
