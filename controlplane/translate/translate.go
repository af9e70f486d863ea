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
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/internal/gateway"
)

// Route kinds knit attaches to Services.
const (
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
)

// ControllerName is the controllerName of the route parent statuses knit writes.
const ControllerName gwv1.GatewayController = "knit.dev/mesh-controller"

// MaxRoutesPerService bounds the Envoy routes of one Service port's RouteConfiguration (per
// producer or consumer namespace), so that no client is sent a configuration too large to
// handle. Routes are attached oldest first; those that no longer fit are not Accepted.
const MaxRoutesPerService = 4096

// RouteRef names an HTTPRoute or GRPCRoute.
type RouteRef struct{ Kind, Namespace, Name string }

func (r RouteRef) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// RouteStatus is the status knit computes for one route: one entry per Service parentRef.
// Conditions carry no LastTransitionTime; the writer keeps it across unchanged conditions.
type RouteStatus struct {
	Ref     RouteRef
	Parents []gwv1.RouteParentStatus
}

// serviceView is a Service with its EndpointSlices.
type serviceView struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
}

// table is the routes of one Service port: those of the Service's own namespace (producer
// routes) and, per client namespace, the consumer routes that replace them for that namespace.
type table struct {
	svc       serviceKey
	port      int32
	cluster   string
	producer  []entry
	consumers map[string][]entry
	// attached keeps a route that names the same port twice from being added twice.
	attached map[RouteRef]bool
}

// Model is the translated mesh, independent of the client; Resources gives one client
// namespace's view.
type Model struct {
	Clusters       []*clusterv3.Cluster
	LoadAssignment []*endpointv3.ClusterLoadAssignment
	Listeners      []*listenerv3.Listener
	// Status is the status of every route with a Service parentRef, sorted by RouteRef.
	Status []RouteStatus
	// Problems are translation errors that are nobody's input mistake (they are logged).
	Problems []string

	tables []*table
	// CertificateVerdicts are, per knit Gateway, the verdicts on its HTTPS listeners'
	// certificateRefs, for the operator (gateway.AnnotationCertificates).
	CertificateVerdicts map[GatewayKey]gateway.CertificateVerdicts

	// gateways are the listeners and routes of each knit Gateway's proxies (gateway.go).
	gateways map[GatewayKey]*gatewayView
}

// Translate builds the model from the inputs. It never fails: input knit cannot use is left
// out and explained in Status (routes) or Problems.
func Translate(in Inputs) *Model {
	m := &Model{}
	services := make(map[serviceKey]*serviceView, len(in.Services))
	for i := range in.Services {
		s := &in.Services[i]
		services[serviceKey{s.Namespace, s.Name}] = &serviceView{svc: s}
	}
	for i := range in.EndpointSlices {
		es := &in.EndpointSlices[i]
		if sv := services[serviceKey{es.Namespace, es.Labels[discoveryv1.LabelServiceName]}]; sv != nil {
			sv.slices = append(sv.slices, es)
		}
	}
	pods := indexPods(in.Pods)

	var routes []*compiledRoute
	var parents [][]gwv1.ParentReference
	var generations []int64
	var hostnames [][]gwv1.Hostname
	for i := range in.HTTPRoutes {
		hr := &in.HTTPRoutes[i]
		routes = append(routes, validated(compileHTTPRoute(hr, services, grants(in.ReferenceGrants))))
		parents = append(parents, hr.Spec.ParentRefs)
		generations = append(generations, hr.Generation)
		hostnames = append(hostnames, hr.Spec.Hostnames)
	}
	for i := range in.GRPCRoutes {
		gr := &in.GRPCRoutes[i]
		routes = append(routes, validated(compileGRPCRoute(gr, services, grants(in.ReferenceGrants))))
		parents = append(parents, gr.Spec.ParentRefs)
		generations = append(generations, gr.Generation)
		hostnames = append(hostnames, gr.Spec.Hostnames)
	}
	order := make([]int, len(routes))
	for i := range order {
		order[i] = i
	}
	// Oldest first: when a Service has more routes than fit, the newest are the ones refused.
	slices.SortFunc(order, func(a, b int) int {
		ra, rb := routes[a], routes[b]
		return cmp.Or(ra.created.Compare(rb.created), cmp.Compare(ra.ref.Namespace, rb.ref.Namespace),
			cmp.Compare(ra.ref.Name, rb.ref.Name), cmp.Compare(ra.ref.Kind, rb.ref.Kind))
	})

	http2 := map[string]bool{}
	for _, r := range routes {
		if r.grpc {
			for _, b := range r.backends {
				http2[ClusterName(b.svc.namespace, b.svc.name, b.port)] = true
			}
		}
	}

	keys := make([]serviceKey, 0, len(services))
	for k := range services {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b serviceKey) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})
	tables := map[backendPort]*table{}
	for _, k := range keys {
		sv := services[k]
		if sv.svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		for _, p := range tcpPorts(sv.svc) {
			name := ClusterName(k.namespace, k.name, p.Port)
			proto := portProtocol(p)
			c, err := buildCluster(name, proto, http2[name])
			if err != nil {
				m.Problems = append(m.Problems, fmt.Sprintf("cluster %s: %v", name, err))
				continue
			}
			cla, err := loadAssignment(name, sv.slices, p, pods, in.TrustDomain)
			if err != nil {
				m.Problems = append(m.Problems, err.Error())
				continue
			}
			m.Clusters = append(m.Clusters, c)
			m.LoadAssignment = append(m.LoadAssignment, cla)
			routeConfig := ""
			if proto != protocolTCP {
				routeConfig = RouteConfigName(k.namespace, k.name, p.Port)
				t := &table{svc: k, port: p.Port, cluster: name, consumers: map[string][]entry{}, attached: map[RouteRef]bool{}}
				tables[backendPort{k, p.Port}] = t
				m.tables = append(m.tables, t)
			}
			for _, ip := range clusterIPs(sv.svc) {
				l, err := buildListener(ip, p.Port, name, routeConfig)
				if err != nil {
					m.Problems = append(m.Problems, fmt.Sprintf("listener %s: %v", ListenerName(ip, p.Port), err))
					continue
				}
				m.Listeners = append(m.Listeners, l)
			}
		}
	}

	statuses := make([]RouteStatus, len(routes))
	for _, i := range order {
		statuses[i] = attach(routes[i], parents[i], generations[i], services, tables)
	}
	for _, s := range statuses {
		if len(s.Parents) > 0 {
			m.Status = append(m.Status, s)
		}
	}
	slices.SortFunc(m.Status, func(a, b RouteStatus) int {
		return cmp.Or(cmp.Compare(a.Ref.Kind, b.Ref.Kind), cmp.Compare(a.Ref.Namespace, b.Ref.Namespace), cmp.Compare(a.Ref.Name, b.Ref.Name))
	})
	for _, t := range m.tables {
		sortEntries(t.producer)
		for _, es := range t.consumers {
			sortEntries(es)
		}
	}
	secrets := make(map[objectKey]*corev1.Secret, len(in.Secrets))
	for i := range in.Secrets {
		secrets[objectKey{in.Secrets[i].Namespace, in.Secrets[i].Name}] = &in.Secrets[i]
	}
	m.translateGateways(in.Gateways, secrets, grants(in.ReferenceGrants), in.NamespaceLabels, routes, parents, generations, hostnames)
	return m
}

func sortEntries(es []entry) {
	slices.SortStableFunc(es, func(a, b entry) int { return comparePrecedence(a.order, b.order) })
}

// validated drops the rules whose Envoy routes fail the Envoy API's own validation, so that no
// proxy is ever sent a route it must refuse.
func validated(cr *compiledRoute) *compiledRoute {
	bad := map[int]error{}
	for _, e := range cr.entries {
		if err := e.route.ValidateAll(); err != nil && bad[e.order.rule] == nil {
			bad[e.order.rule] = err
		}
	}
	if len(bad) == 0 {
		return cr
	}
	kept := cr.entries[:0]
	for _, e := range cr.entries {
		if err := bad[e.order.rule]; err != nil {
			continue
		}
		kept = append(kept, e)
	}
	cr.entries = kept
	rules := make([]int, 0, len(bad))
	for r := range bad {
		rules = append(rules, r)
	}
	slices.Sort(rules)
	for _, r := range rules {
		cr.invalid = append(cr.invalid, fmt.Sprintf("rule %d: %v", r, bad[r]))
	}
	return cr
}

// attach adds a route's entries to the tables of the Service ports its parentRefs name and
// computes its status per Service parentRef.
func attach(cr *compiledRoute, refs []gwv1.ParentReference, generation int64, services map[serviceKey]*serviceView, tables map[backendPort]*table) RouteStatus {
	st := RouteStatus{Ref: cr.ref}
	for _, ref := range refs {
		if !isServiceParent(ref) {
			continue
		}
		accepted := condition(gwv1.RouteConditionAccepted, true, gwv1.RouteReasonAccepted, "attached to the Service's HTTP ports", generation)
		if p := attachParent(cr, ref, services, tables); p != nil {
			accepted = condition(gwv1.RouteConditionAccepted, false, p.reason, p.message, generation)
		}
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
		st.Parents = append(st.Parents, gwv1.RouteParentStatus{ParentRef: ref, ControllerName: ControllerName, Conditions: conds})
	}
	return st
}

// isServiceParent says whether a parentRef names a Service (GAMMA), as opposed to a Gateway.
func isServiceParent(ref gwv1.ParentReference) bool {
	return ref.Kind != nil && *ref.Kind == "Service" && (ref.Group == nil || *ref.Group == "" || *ref.Group == "core")
}

// attachParent attaches the route to the Service ports one parentRef selects (its port, its
// sectionName as a port name, or every HTTP port), all or none; the problem says why none.
func attachParent(cr *compiledRoute, ref gwv1.ParentReference, services map[serviceKey]*serviceView, tables map[backendPort]*table) *problem {
	ns := cr.ref.Namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	key := serviceKey{ns, string(ref.Name)}
	sv := services[key]
	if sv == nil {
		return &problem{gwv1.RouteReasonNoMatchingParent, fmt.Sprintf("Service %s not found", key)}
	}
	var targets []*table
	for _, p := range tcpPorts(sv.svc) {
		if (ref.Port != nil && p.Port != *ref.Port) || (ref.SectionName != nil && p.Name != string(*ref.SectionName)) {
			continue
		}
		t := tables[backendPort{key, p.Port}]
		if t == nil {
			if ref.Port != nil || ref.SectionName != nil {
				return &problem{gwv1.RouteReasonUnsupportedValue, fmt.Sprintf("port %d of Service %s carries opaque TCP (appProtocol or name %q), not HTTP", p.Port, key, portLabel(p))}
			}
			continue
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		what := "no HTTP port"
		switch {
		case ref.Port != nil:
			what = "no port " + strconv.Itoa(int(*ref.Port))
		case ref.SectionName != nil:
			what = fmt.Sprintf("no port named %q", *ref.SectionName)
		}
		return &problem{gwv1.RouteReasonNoMatchingParent, fmt.Sprintf("Service %s has %s (it has %s)", key, what, describePorts(sv.svc))}
	}
	consumer := cr.ref.Namespace != key.namespace
	for _, t := range targets {
		n := len(t.producer)
		if consumer {
			n = len(t.consumers[cr.ref.Namespace])
		}
		if n+len(cr.entries) > MaxRoutesPerService {
			return &problem{gwv1.RouteReasonUnsupportedValue, fmt.Sprintf("Service %s port %d already has %d routes from namespace %s; knit attaches at most %d, oldest routes first",
				key, t.port, n, cr.ref.Namespace, MaxRoutesPerService)}
		}
	}
	for _, t := range targets {
		if t.attached[cr.ref] {
			continue
		}
		t.attached[cr.ref] = true
		if consumer {
			t.consumers[cr.ref.Namespace] = append(t.consumers[cr.ref.Namespace], cr.entries...)
		} else {
			t.producer = append(t.producer, cr.entries...)
		}
	}
	return nil
}

func portLabel(p corev1.ServicePort) string {
	if p.AppProtocol != nil {
		return *p.AppProtocol
	}
	return p.Name
}

func condition(t gwv1.RouteConditionType, ok bool, reason gwv1.RouteConditionReason, message string, generation int64) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	const maxMessage = 1024
	if len(message) > maxMessage {
		message = message[:maxMessage-3] + "..."
	}
	return metav1.Condition{Type: string(t), Status: status, Reason: string(reason), Message: message, ObservedGeneration: generation}
}

// Resources is what a client in one namespace receives.
type Resources struct {
	Clusters       []*clusterv3.Cluster
	LoadAssignment []*endpointv3.ClusterLoadAssignment
	Listeners      []*listenerv3.Listener
	Routes         []*routev3.RouteConfiguration
}

// Resources gives the view of a client in namespace clientNamespace: consumer routes of that
// namespace replace a Service's producer routes (GEP-1426); a Service port without routes sends
// everything to its own cluster.
func (m *Model) Resources(clientNamespace string) Resources {
	out := Resources{Clusters: m.Clusters, LoadAssignment: m.LoadAssignment, Listeners: m.Listeners}
	for _, t := range m.tables {
		entries := t.producer
		if c := t.consumers[clientNamespace]; len(c) > 0 && clientNamespace != t.svc.namespace {
			entries = c
		}
		name := RouteConfigName(t.svc.namespace, t.svc.name, t.port)
		vh := &routev3.VirtualHost{Name: name, Domains: []string{"*"}}
		if len(entries) == 0 {
			vh.Routes = []*routev3.Route{{
				Name:  "default",
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: t.cluster},
					RetryPolicy: DefaultRetryPolicy()}},
			}}
		}
		for _, e := range entries {
			vh.Routes = append(vh.Routes, e.route)
		}
		out.Routes = append(out.Routes, &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{vh}})
	}
	return out
}
