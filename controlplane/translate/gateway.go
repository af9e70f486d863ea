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

package translate

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/internal/gateway"
)

// GatewayKey names a Gateway: "<namespace>/<name>".
type GatewayKey struct{ Namespace, Name string }

func (k GatewayKey) String() string { return k.Namespace + "/" + k.Name }

// GatewayListenerName names the Listener of one port of a Gateway.
func GatewayListenerName(port int32) string { return fmt.Sprintf("gateway_%d", port) }

// GatewayRouteConfigName names the RouteConfiguration of one port of a Gateway.
func GatewayRouteConfigName(k GatewayKey, port int32) string {
	return fmt.Sprintf("gateway/%s/%s/%d", k.Namespace, k.Name, port)
}

// gatewayView is what a gateway proxy is sent beyond the clusters every proxy gets: one bound
// Listener and one RouteConfiguration per port the Gateway serves.
type gatewayView struct {
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
}

// gatewayPort collects the routes of one served port, by hostname, and on an HTTPS port the
// TLS of each listener.
type gatewayPort struct {
	port  int32
	hosts map[string][]entry
	tls   []tlsChain
}

// tlsChain is one HTTPS listener of a port: TLS connections whose server name (SNI) it matches
// get its certificates.
type tlsChain struct {
	listener string
	hostname string // "" matches any server name
	certs    []certificate
}

// translateGateways builds, for every Gateway of a knit class in gateways, the listeners and
// routes of its proxies from the routes attached to it (internal/gateway.Attach decides, the same
// rules the operator counts attachedRoutes with), and adds a parent status per Gateway parentRef
// to the routes' statuses. Routes of a hostname are ordered by Gateway API precedence; hostnames
// are matched exact first, then the longest wildcard, then any.
func (m *Model) translateGateways(gateways []gwv1.Gateway, secrets map[objectKey]*corev1.Secret, g grants, namespaceLabels map[string]map[string]string,
	routes []*compiledRoute, parents [][]gwv1.ParentReference, generations []int64, hostnames [][]gwv1.Hostname) {
	m.gateways = map[GatewayKey]*gatewayView{}
	m.CertificateVerdicts = map[GatewayKey]gateway.CertificateVerdicts{}
	byKey := map[GatewayKey]*gwv1.Gateway{}
	for i := range gateways {
		gw := &gateways[i]
		byKey[GatewayKey{gw.Namespace, gw.Name}] = gw
	}
	ports := map[GatewayKey]map[int32]*gatewayPort{}
	judged := map[GatewayKey][]gateway.Listener{}
	for k, gw := range byKey {
		certs := newCertificateJudge(gw, secrets, g)
		judged[k] = gateway.Listeners(gw, certs.check)
		m.CertificateVerdicts[k] = gateway.CertificateVerdicts{Generation: gw.Generation, Listeners: certs.verdicts}
		ports[k] = map[int32]*gatewayPort{}
		for _, l := range judged[k] {
			if !l.Served() {
				continue
			}
			p := ports[k][int32(l.Port)]
			if p == nil {
				p = &gatewayPort{port: int32(l.Port), hosts: map[string][]entry{}}
				ports[k][int32(l.Port)] = p
			}
			if l.Protocol == gwv1.HTTPSProtocolType {
				host := ""
				if l.Hostname != nil {
					host = string(*l.Hostname)
				}
				p.tls = append(p.tls, tlsChain{listener: string(l.Name), hostname: host, certs: certs.certs[string(l.Name)]})
			}
		}
	}
	nsLabels := func(ns string) map[string]string { return namespaceLabels[ns] }

	statuses := map[RouteRef][]gwv1.RouteParentStatus{}
	for i, cr := range routes {
		for _, ref := range parents[i] {
			ns, name, ok := gateway.ParentGateway(ref, cr.ref.Namespace)
			if !ok {
				continue
			}
			k := GatewayKey{ns, name}
			gw := byKey[k]
			if gw == nil {
				continue // not a knit Gateway: another controller's to report
			}
			att := gateway.Attach(gw, judged[k], ref, cr.ref.Kind, cr.ref.Namespace, hostnames[i], nsLabels)
			for _, li := range att.Listeners {
				l := judged[k][li]
				p := ports[k][int32(l.Port)]
				for _, h := range gateway.IntersectHostnames(l.Hostname, hostnames[i]) {
					if !slices.ContainsFunc(p.hosts[h], func(e entry) bool { return len(cr.entries) > 0 && e.route == cr.entries[0].route }) {
						p.hosts[h] = append(p.hosts[h], cr.entries...)
					}
				}
			}
			statuses[cr.ref] = append(statuses[cr.ref], gatewayParentStatus(cr, ref, att, generations[i]))
		}
	}

	for k, byPort := range ports {
		view := &gatewayView{}
		for _, p := range sortedPorts(byPort) {
			name := GatewayRouteConfigName(k, p.port)
			l, err := buildGatewayListener(p.port, name, p.tls)
			if err != nil {
				m.Problems = append(m.Problems, fmt.Sprintf("gateway %s listener %d: %v", k, p.port, err))
				continue
			}
			view.listeners = append(view.listeners, l)
			view.routes = append(view.routes, &routev3.RouteConfiguration{Name: name, VirtualHosts: virtualHosts(name, p.hosts)})
		}
		m.gateways[k] = view
	}
	m.mergeStatuses(statuses)
}

func sortedPorts(byPort map[int32]*gatewayPort) []*gatewayPort {
	out := make([]*gatewayPort, 0, len(byPort))
	for _, p := range byPort {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *gatewayPort) int { return cmp.Compare(a.port, b.port) })
	return out
}

// virtualHosts makes one virtual host per hostname, exact names first, then wildcards longest
// first, then "*". A port no route attaches to has one virtual host whose only route answers 404
// (a virtual host without routes is invalid xDS: a proxy would refuse the whole configuration).
func virtualHosts(routeConfig string, hosts map[string][]entry) []*routev3.VirtualHost {
	names := make([]string, 0, len(hosts))
	for h := range hosts {
		names = append(names, h)
	}
	rank := func(h string) int {
		switch {
		case h == "*":
			return 2
		case strings.HasPrefix(h, "*"):
			return 1
		}
		return 0
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(len(b), len(a)), cmp.Compare(a, b))
	})
	var out []*routev3.VirtualHost
	for _, h := range names {
		es := slices.Clone(hosts[h])
		sortEntries(es)
		vh := &routev3.VirtualHost{Name: routeConfig + "/" + h, Domains: []string{h}}
		for _, e := range es {
			vh.Routes = append(vh.Routes, e.route)
		}
		out = append(out, vh)
	}
	if len(out) == 0 {
		out = []*routev3.VirtualHost{{Name: routeConfig + "/*", Domains: []string{"*"}, Routes: []*routev3.Route{{
			Name:   "no-route-attached",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
		}}}}
	}
	return out
}

// gatewayParentStatus is a route's status for one Gateway parentRef.
func gatewayParentStatus(cr *compiledRoute, ref gwv1.ParentReference, att gateway.Attachment, generation int64) gwv1.RouteParentStatus {
	accepted := condition(gwv1.RouteConditionAccepted, len(att.Listeners) > 0, att.Reason, att.Message, generation)
	resolved := condition(gwv1.RouteConditionResolvedRefs, true, gwv1.RouteReasonResolvedRefs, "all backendRefs resolved", generation)
	if len(cr.refs) > 0 {
		msgs := make([]string, 0, len(cr.refs))
		for _, p := range cr.refs {
			msgs = append(msgs, p.message)
		}
		resolved = condition(gwv1.RouteConditionResolvedRefs, false, cr.refs[0].reason, strings.Join(msgs, "; "), generation)
	}
	conds := []metav1.Condition{accepted, resolved}
	if len(cr.invalid) > 0 {
		conds = append(conds, condition(gwv1.RouteConditionPartiallyInvalid, true, gwv1.RouteReasonUnsupportedValue,
			"rules dropped or answering 500: "+strings.Join(cr.invalid, "; "), generation))
	}
	return gwv1.RouteParentStatus{ParentRef: ref, ControllerName: gateway.ControllerName, Conditions: conds}
}

// mergeStatuses adds Gateway parent statuses to the routes' statuses, keeping them sorted.
func (m *Model) mergeStatuses(extra map[RouteRef][]gwv1.RouteParentStatus) {
	for ref, parents := range extra {
		i := slices.IndexFunc(m.Status, func(s RouteStatus) bool { return s.Ref == ref })
		if i < 0 {
			m.Status = append(m.Status, RouteStatus{Ref: ref})
			i = len(m.Status) - 1
		}
		m.Status[i].Parents = append(m.Status[i].Parents, parents...)
	}
	slices.SortFunc(m.Status, func(a, b RouteStatus) int {
		return cmp.Or(cmp.Compare(a.Ref.Kind, b.Ref.Kind), cmp.Compare(a.Ref.Namespace, b.Ref.Namespace), cmp.Compare(a.Ref.Name, b.Ref.Name))
	})
}

func gatewayAddress(port int32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       "0.0.0.0",
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// GatewayResources is what a proxy of the Gateway k receives: every cluster (as sidecars get
// them) and the Gateway's own listeners and routes. ok is false for a Gateway knit does not run.
func (m *Model) GatewayResources(k GatewayKey) (res Resources, ok bool) {
	view := m.gateways[k]
	if view == nil {
		return Resources{}, false
	}
	return Resources{Clusters: m.Clusters, LoadAssignment: m.LoadAssignment, Listeners: view.listeners, Routes: view.routes}, true
}

// buildGatewayListener is a bound listener on all addresses of the pod, HTTP through RDS; on an
// HTTPS port, one TLS-terminating filter chain per listener (gatewayTLSChains).
func buildGatewayListener(port int32, routeConfig string, chains []tlsChain) (*listenerv3.Listener, error) {
	hcm, err := rdsConnectionManager(routeConfig)
	if err != nil {
		return nil, err
	}
	if len(chains) > 0 {
		fcs, err := gatewayTLSChains(chains, hcm)
		if err != nil {
			return nil, err
		}
		return &listenerv3.Listener{
			Name:             GatewayListenerName(port),
			Address:          gatewayAddress(port),
			BindToPort:       wrapperspb.Bool(true),
			TrafficDirection: corev3.TrafficDirection_INBOUND,
			FilterChains:     fcs,
		}, nil
	}
	return &listenerv3.Listener{
		Name: GatewayListenerName(port),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       "0.0.0.0",
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
		}}},
		BindToPort:       wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Name:    "http",
			Filters: []*listenerv3.Filter{{Name: HTTPConnectionManagerFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}},
	}, nil
}
