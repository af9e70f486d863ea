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

package gateway

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Attachment is the outcome of one parentRef of a route that names a knit Gateway.
type Attachment struct {
	// Listeners are the indexes (into the Gateway's listeners) the route attaches to.
	Listeners []int
	// Counted are the listeners whose attachedRoutes count the route: as Listeners, but also
	// those that cannot be served (Gateway API counts attachment by allowedRoutes and parentRef
	// alone, "regardless of the listener's conditions").
	Counted []int
	// Reason is the route's Accepted reason: Accepted when Listeners is not empty, otherwise
	// NoMatchingParent, NotAllowedByListeners or NoMatchingListenerHostname.
	Reason  gatewayv1.RouteConditionReason
	Message string
}

// Attach decides which listeners of gw (judged by Listeners) a route of kind routeKind in
// routeNamespace attaches to through ref, as Gateway API says: sectionName and port narrow the
// listeners; each must be served, accept the kind and the route's namespace (allowedRoutes),
// and share a hostname with the route. namespaceLabels returns a namespace's labels (for
// allowedRoutes.namespaces.from: Selector). The caller has checked that ref names gw.
func Attach(gw *gatewayv1.Gateway, listeners []Listener, ref gatewayv1.ParentReference, routeKind, routeNamespace string,
	routeHostnames []gatewayv1.Hostname, namespaceLabels func(string) map[string]string) Attachment {
	var candidates, allowed int
	var out Attachment
	for i := range listeners {
		l := &listeners[i]
		if ref.SectionName != nil && *ref.SectionName != l.Name {
			continue
		}
		if ref.Port != nil && *ref.Port != l.Port {
			continue
		}
		candidates++
		if !acceptsKind(l, routeKind) || !acceptsNamespace(gw, l, routeNamespace, namespaceLabels) {
			continue
		}
		meets := len(IntersectHostnames(l.Hostname, routeHostnames)) > 0
		if meets {
			out.Counted = append(out.Counted, i)
		}
		if !l.Served() {
			continue
		}
		allowed++
		if !meets {
			continue
		}
		out.Listeners = append(out.Listeners, i)
	}
	switch {
	case len(out.Listeners) > 0:
		out.Reason, out.Message = gatewayv1.RouteReasonAccepted, "attached to the Gateway"
	case candidates == 0:
		out.Reason, out.Message = gatewayv1.RouteReasonNoMatchingParent, "no listener of the Gateway matches the parentRef's sectionName and port"
	case allowed == 0:
		out.Reason, out.Message = gatewayv1.RouteReasonNotAllowedByListeners,
			"no listener accepts this route: check the listeners' protocol, allowedRoutes.kinds and allowedRoutes.namespaces"
	default:
		out.Reason, out.Message = gatewayv1.RouteReasonNoMatchingListenerHostname, "no hostname of the route matches a listener's hostname"
	}
	return out
}

func acceptsKind(l *Listener, kind string) bool {
	for _, k := range l.SupportedKinds {
		if string(k.Kind) == kind {
			return true
		}
	}
	return false
}

func acceptsNamespace(gw *gatewayv1.Gateway, l *Listener, ns string, namespaceLabels func(string) map[string]string) bool {
	from := gatewayv1.NamespacesFromSame
	var selector *gatewayv1.RouteNamespaces
	if l.AllowedRoutes != nil && l.AllowedRoutes.Namespaces != nil {
		selector = l.AllowedRoutes.Namespaces
		if selector.From != nil {
			from = *selector.From
		}
	}
	switch from {
	case gatewayv1.NamespacesFromAll:
		return true
	case gatewayv1.NamespacesFromSame:
		return ns == gw.Namespace
	case gatewayv1.NamespacesFromSelector:
		if selector.Selector == nil {
			return false
		}
		sel, err := metav1LabelSelector(selector)
		return err == nil && sel.Matches(labels.Set(namespaceLabels(ns)))
	default:
		return false
	}
}

// IntersectHostnames returns the hostnames a route serves on a listener: the route's hostnames
// that the listener's matches (a wildcard route hostname narrowed to the listener's), the
// listener's when the route has none, or ["*"] when neither sets any. Empty: no overlap.
func IntersectHostnames(listener *gatewayv1.Hostname, route []gatewayv1.Hostname) []string {
	if len(route) == 0 {
		if listener == nil || *listener == "" {
			return []string{"*"}
		}
		return []string{string(*listener)}
	}
	if listener == nil || *listener == "" {
		out := make([]string, len(route))
		for i, h := range route {
			out[i] = string(h)
		}
		return out
	}
	l := string(*listener)
	var out []string
	for _, h := range route {
		r := string(h)
		switch {
		case hostMatches(l, r):
			out = append(out, r)
		case hostMatches(r, l):
			out = append(out, l)
		}
	}
	return out
}

// hostMatches says whether host is within pattern: equal, or pattern is "*.suffix" and host
// ends in ".suffix" with at least one label before it.
func hostMatches(pattern, host string) bool {
	if pattern == host {
		return true
	}
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok {
		return false
	}
	return strings.HasSuffix(host, suffix) && len(strings.TrimPrefix(host, "*")) > len(suffix)
}

func metav1LabelSelector(ns *gatewayv1.RouteNamespaces) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(ns.Selector)
}

// ParentGateway returns the namespace and name of the Gateway a route's parentRef names, if it
// names one (group gateway.networking.k8s.io and kind Gateway, the defaults).
func ParentGateway(ref gatewayv1.ParentReference, routeNamespace string) (namespace, name string, ok bool) {
	if ref.Group != nil && *ref.Group != gatewayv1.GroupName {
		return "", "", false
	}
	if ref.Kind != nil && *ref.Kind != "Gateway" {
		return "", "", false
	}
	namespace = routeNamespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		namespace = string(*ref.Namespace)
	}
	return namespace, string(ref.Name), true
}
