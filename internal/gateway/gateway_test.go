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
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func hostnamePtr(h string) *gatewayv1.Hostname { v := gatewayv1.Hostname(h); return &v }

func TestIntersectHostnames(t *testing.T) {
	for _, tc := range []struct {
		name     string
		listener *gatewayv1.Hostname
		route    []gatewayv1.Hostname
		want     []string
	}{
		{"neither sets any", nil, nil, []string{"*"}},
		{"listener only", hostnamePtr("a.example.com"), nil, []string{"a.example.com"}},
		{"route only", nil, []gatewayv1.Hostname{"a.example.com", "b.example.com"}, []string{"a.example.com", "b.example.com"}},
		{"wildcard listener takes a matching route host", hostnamePtr("*.example.com"), []gatewayv1.Hostname{"shop.example.com", "shop.example.org"}, []string{"shop.example.com"}},
		{"wildcard listener takes deeper hosts", hostnamePtr("*.example.com"), []gatewayv1.Hostname{"a.b.example.com"}, []string{"a.b.example.com"}},
		{"wildcard listener does not take its own suffix", hostnamePtr("*.example.com"), []gatewayv1.Hostname{"example.com"}, nil},
		{"wildcard route narrowed to the listener", hostnamePtr("shop.example.com"), []gatewayv1.Hostname{"*.example.com"}, []string{"shop.example.com"}},
		{"no overlap", hostnamePtr("a.example.com"), []gatewayv1.Hostname{"b.example.com"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IntersectHostnames(tc.listener, tc.route); !slices.Equal(got, tc.want) {
				t.Errorf("IntersectHostnames = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestListenersReportWhatCannotBeServed(t *testing.T) {
	udp := gatewayv1.Listener{Name: "dns", Port: 53, Protocol: gatewayv1.UDPProtocolType}
	gw := &gatewayv1.Gateway{Spec: gatewayv1.GatewaySpec{Listeners: []gatewayv1.Listener{
		{Name: "http", Port: 80, Protocol: gatewayv1.HTTPProtocolType},
		{Name: "https", Port: 443, Protocol: gatewayv1.HTTPSProtocolType},
		{Name: "a", Port: 8080, Protocol: gatewayv1.HTTPProtocolType, Hostname: hostnamePtr("a.example.com")},
		{Name: "b", Port: 8080, Protocol: gatewayv1.HTTPProtocolType, Hostname: hostnamePtr("b.example.com")},
		{Name: "c", Port: 8080, Protocol: gatewayv1.HTTPProtocolType, Hostname: hostnamePtr("b.example.com")},
		{Name: "http-on-53", Port: 53, Protocol: gatewayv1.HTTPProtocolType},
		udp,
		{Name: "probes", Port: ProbePort, Protocol: gatewayv1.HTTPProtocolType},
		{Name: "tcp-kind", Port: 81, Protocol: gatewayv1.HTTPProtocolType, AllowedRoutes: &gatewayv1.AllowedRoutes{
			Kinds: []gatewayv1.RouteGroupKind{{Kind: "TCPRoute"}, {Kind: "HTTPRoute"}},
		}},
	}}}
	got := Listeners(gw, noCertificates)
	reasons := map[string][]gatewayv1.ListenerConditionReason{}
	for _, l := range got {
		for _, p := range l.Problems {
			reasons[string(l.Name)] = append(reasons[string(l.Name)], p.Reason)
		}
	}
	want := map[string][]gatewayv1.ListenerConditionReason{
		"https":      {gatewayv1.ListenerReasonUnsupportedProtocol}, // no tls: nothing to terminate with
		"b":          {gatewayv1.ListenerReasonHostnameConflict},
		"c":          {gatewayv1.ListenerReasonHostnameConflict},
		"http-on-53": {gatewayv1.ListenerReasonProtocolConflict},
		"dns":        {gatewayv1.ListenerReasonUnsupportedProtocol, gatewayv1.ListenerReasonProtocolConflict},
		"probes":     {gatewayv1.ListenerReasonPortUnavailable},
		"tcp-kind":   {gatewayv1.ListenerReasonInvalidRouteKinds},
	}
	for name, w := range want {
		if !slices.Equal(reasons[name], w) {
			t.Errorf("listener %s: reasons %v, want %v", name, reasons[name], w)
		}
	}
	for name := range reasons {
		if _, ok := want[name]; !ok {
			t.Errorf("listener %s: unexpected problems %v", name, reasons[name])
		}
	}
	if kinds := got[8].SupportedKinds; len(kinds) != 1 || kinds[0].Kind != "HTTPRoute" {
		t.Errorf("tcp-kind supported kinds = %v, want only HTTPRoute", kinds)
	}
}

func TestAttach(t *testing.T) {
	same, all, selector := gatewayv1.NamespacesFromSame, gatewayv1.NamespacesFromAll, gatewayv1.NamespacesFromSelector
	gw := &gatewayv1.Gateway{Spec: gatewayv1.GatewaySpec{Listeners: []gatewayv1.Listener{
		{Name: "same", Port: 80, Protocol: gatewayv1.HTTPProtocolType, AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &same}}},
		{Name: "all", Port: 8080, Protocol: gatewayv1.HTTPProtocolType, Hostname: hostnamePtr("*.example.com"),
			AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{From: &all}}},
		{Name: "selected", Port: 9090, Protocol: gatewayv1.HTTPProtocolType, AllowedRoutes: &gatewayv1.AllowedRoutes{Namespaces: &gatewayv1.RouteNamespaces{
			From: &selector, Selector: &metav1LabelSelectorForTest}}},
		{Name: "https", Port: 443, Protocol: gatewayv1.HTTPSProtocolType},
	}}}
	gw.Namespace = "infra"
	listeners := Listeners(gw, noCertificates)
	labels := func(ns string) map[string]string {
		if ns == "team" {
			return map[string]string{"gateway-access": "yes"}
		}
		return nil
	}
	section := func(s string) *gatewayv1.SectionName { v := gatewayv1.SectionName(s); return &v }
	port := func(p int32) *gatewayv1.PortNumber { v := gatewayv1.PortNumber(p); return &v }
	for _, tc := range []struct {
		name       string
		ref        gatewayv1.ParentReference
		kind, ns   string
		hosts      []gatewayv1.Hostname
		want       []int
		wantReason gatewayv1.RouteConditionReason
	}{
		{"same namespace attaches to same, all, not selected", gatewayv1.ParentReference{}, "HTTPRoute", "infra", nil, []int{0, 1}, gatewayv1.RouteReasonAccepted},
		{"another namespace attaches to all only", gatewayv1.ParentReference{}, "HTTPRoute", "shop", nil, []int{1}, gatewayv1.RouteReasonAccepted},
		{"a selected namespace", gatewayv1.ParentReference{}, "GRPCRoute", "team", nil, []int{1, 2}, gatewayv1.RouteReasonAccepted},
		{"sectionName narrows", gatewayv1.ParentReference{SectionName: section("same")}, "HTTPRoute", "shop", nil, nil, gatewayv1.RouteReasonNotAllowedByListeners},
		{"port narrows", gatewayv1.ParentReference{Port: port(9090)}, "HTTPRoute", "team", nil, []int{2}, gatewayv1.RouteReasonAccepted},
		{"no such section", gatewayv1.ParentReference{SectionName: section("nope")}, "HTTPRoute", "infra", nil, nil, gatewayv1.RouteReasonNoMatchingParent},
		{"an unserved listener takes nothing", gatewayv1.ParentReference{SectionName: section("https")}, "HTTPRoute", "infra", nil, nil, gatewayv1.RouteReasonNotAllowedByListeners},
		{"hostnames must meet", gatewayv1.ParentReference{SectionName: section("all")}, "HTTPRoute", "shop", []gatewayv1.Hostname{"example.org"}, nil, gatewayv1.RouteReasonNoMatchingListenerHostname},
		{"a kind no listener takes", gatewayv1.ParentReference{}, "TCPRoute", "infra", nil, nil, gatewayv1.RouteReasonNotAllowedByListeners},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Attach(gw, listeners, tc.ref, tc.kind, tc.ns, tc.hosts, labels)
			if !slices.Equal(got.Listeners, tc.want) || got.Reason != tc.wantReason {
				t.Errorf("Attach = %v %s, want %v %s", got.Listeners, got.Reason, tc.want, tc.wantReason)
			}
		})
	}
}

// noCertificates resolves every certificateRef.
func noCertificates(gatewayv1.Listener) *ListenerProblem { return nil }

var metav1LabelSelectorForTest = metav1.LabelSelector{MatchLabels: map[string]string{"gateway-access": "yes"}}

// HTTPS listeners are served when they terminate TLS and their certificates resolve; the
// operator takes the control plane's verdict from the Gateway's annotation, for the Gateway's
// current generation only (else the listener waits, Programmed False Pending).
func TestHTTPSListenersFollowTheCertificateVerdict(t *testing.T) {
	passthrough := gatewayv1.TLSModePassthrough
	ref := []gatewayv1.SecretObjectReference{{Name: "cert"}}
	gw := &gatewayv1.Gateway{Spec: gatewayv1.GatewaySpec{Listeners: []gatewayv1.Listener{
		{Name: "ok", Port: 443, Protocol: gatewayv1.HTTPSProtocolType, TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: ref}},
		{Name: "bad", Port: 8443, Protocol: gatewayv1.HTTPSProtocolType, TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: ref}},
		{Name: "unjudged", Port: 9443, Protocol: gatewayv1.HTTPSProtocolType, TLS: &gatewayv1.ListenerTLSConfig{CertificateRefs: ref}},
		{Name: "passthrough", Port: 10443, Protocol: gatewayv1.HTTPSProtocolType, TLS: &gatewayv1.ListenerTLSConfig{Mode: &passthrough}},
	}}}
	gw.Generation = 2
	gw.Annotations = map[string]string{AnnotationCertificates: CertificateVerdicts{Generation: 2, Listeners: map[string]CertificateVerdict{
		"ok":  {Reason: gatewayv1.ListenerReasonResolvedRefs},
		"bad": {Reason: gatewayv1.ListenerReasonRefNotPermitted, Message: "no grant"},
	}}.Encode()}
	got := Listeners(gw, CertificatesFromAnnotation(gw))
	if !got[0].Served() || len(got[0].SupportedKinds) != 2 {
		t.Errorf("ok: problems %v, kinds %v; want served, HTTPRoute and GRPCRoute", got[0].Problems, got[0].SupportedKinds)
	}
	if p := got[1].Problems; len(p) != 1 || p[0].Condition != gatewayv1.ListenerConditionResolvedRefs || p[0].Reason != gatewayv1.ListenerReasonRefNotPermitted || !got[1].Exposed() {
		t.Errorf("bad: %v (exposed %v), want ResolvedRefs RefNotPermitted, port still exposed", p, got[1].Exposed())
	}
	if p := got[2].Problems; len(p) != 1 || p[0].Reason != gatewayv1.ListenerReasonPending {
		t.Errorf("unjudged: %v, want Pending", p)
	}
	if p := got[3].Problems; len(p) != 1 || p[0].Reason != gatewayv1.ListenerReasonUnsupportedProtocol || got[3].Exposed() {
		t.Errorf("passthrough: %v, want UnsupportedProtocol and no port", p)
	}
	gw.Generation = 3 // a spec change the control plane has not judged yet
	for _, l := range Listeners(gw, CertificatesFromAnnotation(gw))[:3] {
		if len(l.Problems) != 1 || l.Problems[0].Reason != gatewayv1.ListenerReasonPending {
			t.Errorf("%s after a spec change: %v, want Pending", l.Name, l.Problems)
		}
	}
	// Routes count on a listener that cannot be served (attachedRoutes), but attach only to served ones.
	att := Attach(gw, got, gatewayv1.ParentReference{}, "HTTPRoute", "", nil, func(string) map[string]string { return nil })
	if !slices.Equal(att.Listeners, []int{0}) || !slices.Equal(att.Counted, []int{0, 1, 2}) {
		t.Errorf("Attach: listeners %v counted %v, want [0] and [0 1 2]", att.Listeners, att.Counted)
	}
}
