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
	"fmt"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// entry is one Envoy route (one match of one rule) with what orders it among the others.
type entry struct {
	order precedence
	route *routev3.Route
}

// compiledRoute is an HTTPRoute or GRPCRoute turned into Envoy routes, independent of which
// Service it is attached to and which client reads it.
type compiledRoute struct {
	ref     RouteRef
	created time.Time
	entries []entry
	// refs are the backendRef problems (ResolvedRefs=False: the first one's reason, all messages).
	refs []problem
	// invalid lists rules that could not be represented (dropped, or answering 500).
	invalid []string
	// rules counts all rules, to tell a partly invalid route from a wholly invalid one.
	rules int
	// grpc is set for GRPCRoutes: the backends' clusters must speak HTTP/2.
	grpc bool
	// backends are the Service ports the route sends to.
	backends []backendPort
}

type backendPort struct {
	svc  serviceKey
	port int32
}

// addRefProblem records a backendRef problem once.
func (cr *compiledRoute) addRefProblem(p problem) {
	for _, old := range cr.refs {
		if old.message == p.message {
			return
		}
	}
	cr.refs = append(cr.refs, p)
}

// problem is a condition reason with its message.
type problem struct {
	reason  gwv1.RouteConditionReason
	message string
}

// ruleBuilder holds what one rule's matches share.
type ruleBuilder struct {
	services map[serviceKey]*serviceView
	grants   grants
	route    *compiledRoute
	ns       string
	// parents are the Services the route's parentRefs name: a consumer route may send to its
	// parent Service in another namespace without a ReferenceGrant (GEP-1426).
	parents map[serviceKey]bool
}

func newRuleBuilder(services map[serviceKey]*serviceView, g grants, cr *compiledRoute, refs []gwv1.ParentReference) *ruleBuilder {
	b := &ruleBuilder{services: services, grants: g, route: cr, ns: cr.ref.Namespace, parents: map[serviceKey]bool{}}
	for _, ref := range refs {
		if !isServiceParent(ref) {
			continue
		}
		ns := cr.ref.Namespace
		if ref.Namespace != nil && *ref.Namespace != "" {
			ns = string(*ref.Namespace)
		}
		b.parents[serviceKey{ns, string(ref.Name)}] = true
	}
	return b
}

// backendHeaders are a backendRef's own header modifier filters.
type backendHeaders struct {
	requestAdd, responseAdd       []*corev3.HeaderValueOption
	requestRemove, responseRemove []string
}

func (h *backendHeaders) addRequest(f *gwv1.HTTPHeaderFilter) {
	add, remove := headerOptions(f)
	h.requestAdd, h.requestRemove = append(h.requestAdd, add...), append(h.requestRemove, remove...)
}

func (h *backendHeaders) addResponse(f *gwv1.HTTPHeaderFilter) {
	add, remove := headerOptions(f)
	h.responseAdd, h.responseRemove = append(h.responseAdd, add...), append(h.responseRemove, remove...)
}

// applyTo adds the backend's header changes to a route whose only backend it is.
func (h backendHeaders) applyTo(r *routev3.Route) {
	r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, h.requestAdd...)
	r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, h.requestRemove...)
	r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, h.responseAdd...)
	r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, h.responseRemove...)
}

// resolveBackends turns a rule's backendRefs into an Envoy action: one cluster, weighted
// clusters (a backend that does not resolve keeps its share as a cluster-less entry, which the
// proxy answers with 500), or a 500 direct response when nothing can be sent anywhere. A
// backend's own header filters go on its weighted entry, or are returned for the route when it
// is the only backend.
func (b *ruleBuilder) resolveBackends(refs []gwv1.BackendRef, headers []backendHeaders) (*routev3.RouteAction, *routev3.DirectResponseAction, backendHeaders) {
	type weighted struct {
		cluster string
		weight  uint32
		headers backendHeaders
	}
	var ws []weighted
	var total uint32
	resolved := 0
	for i, ref := range refs {
		w := uint32(1)
		if ref.Weight != nil {
			if *ref.Weight < 0 {
				continue
			}
			w = uint32(*ref.Weight)
		}
		cluster, p := b.resolve(ref.BackendObjectReference)
		if p != nil {
			b.route.addRefProblem(*p)
		}
		if w == 0 {
			continue
		}
		if p == nil {
			resolved++
		}
		ws = append(ws, weighted{cluster, w, headers[i]})
		total += w
	}
	if total == 0 || resolved == 0 {
		return nil, &routev3.DirectResponseAction{Status: 500}, backendHeaders{}
	}
	if len(ws) == 1 && ws[0].cluster != "" {
		return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ws[0].cluster}}, nil, ws[0].headers
	}
	wc := &routev3.WeightedCluster{}
	for _, w := range ws {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name: w.cluster, Weight: wrapperspb.UInt32(w.weight),
			RequestHeadersToAdd: w.headers.requestAdd, RequestHeadersToRemove: w.headers.requestRemove,
			ResponseHeadersToAdd: w.headers.responseAdd, ResponseHeadersToRemove: w.headers.responseRemove,
		})
	}
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}, nil, backendHeaders{}
}

// resolve finds the cluster of a backendRef, or says why there is none.
func (b *ruleBuilder) resolve(ref gwv1.BackendObjectReference) (string, *problem) {
	if (ref.Group != nil && *ref.Group != "" && *ref.Group != "core") || (ref.Kind != nil && *ref.Kind != "Service") {
		return "", &problem{gwv1.RouteReasonInvalidKind, fmt.Sprintf("backendRef %s: only Services (group \"\", kind Service) are supported", ref.Name)}
	}
	ns := b.ns
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	key := serviceKey{ns, string(ref.Name)}
	if ns != b.ns && !b.parents[key] && !b.grants.allowService(b.route.ref.Kind, b.ns, ns, key.name) {
		return "", &problem{gwv1.RouteReasonRefNotPermitted, fmt.Sprintf("backendRef %s: no ReferenceGrant in namespace %s lets %ss of namespace %s refer to it", key, ns, b.route.ref.Kind, b.ns)}
	}
	svc := b.services[key]
	if svc == nil {
		return "", &problem{gwv1.RouteReasonBackendNotFound, fmt.Sprintf("backendRef %s: Service not found", key)}
	}
	if ref.Port == nil {
		return "", &problem{gwv1.RouteReasonUnsupportedValue, fmt.Sprintf("backendRef %s: a port is required", key)}
	}
	if _, ok := findPort(svc.svc, *ref.Port); !ok {
		return "", &problem{gwv1.RouteReasonBackendNotFound, fmt.Sprintf("backendRef %s: port %d not found (the Service has %s)", key, *ref.Port, describePorts(svc.svc))}
	}
	b.route.backends = append(b.route.backends, backendPort{key, *ref.Port})
	return ClusterName(ns, string(ref.Name), *ref.Port), nil
}

// headerOptions converts a header modifier filter into Envoy header options (set overwrites,
// add appends) and names to remove.
func headerOptions(f *gwv1.HTTPHeaderFilter) ([]*corev3.HeaderValueOption, []string) {
	if f == nil {
		return nil, nil
	}
	var out []*corev3.HeaderValueOption
	for _, h := range f.Set {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(string(h.Name)), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, h := range f.Add {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: strings.ToLower(string(h.Name)), Value: h.Value},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	var remove []string
	for _, name := range f.Remove {
		remove = append(remove, strings.ToLower(name))
	}
	return out, remove
}

// stringMatch is an exact or RE2 string matcher; a regex that does not compile is an error.
func stringMatch(regex bool, value string) (*matcherv3.StringMatcher, error) {
	if !regex {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}}, nil
	}
	if err := checkRegex(value); err != nil {
		return nil, err
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}}, nil
}

// maxRegexLength bounds a regex's size, as Envoy's RE2 program size limit does.
const maxRegexLength = 1024

func checkRegex(re string) error {
	if len(re) > maxRegexLength {
		return fmt.Errorf("regular expression longer than %d bytes", maxRegexLength)
	}
	if _, err := regexp.Compile(re); err != nil {
		return fmt.Errorf("regular expression %q is not RE2: %w", re, err)
	}
	return nil
}

func headerMatcher(name string, regex bool, value string) (*routev3.HeaderMatcher, error) {
	sm, err := stringMatch(regex, value)
	if err != nil {
		return nil, fmt.Errorf("header %s: %w", name, err)
	}
	return &routev3.HeaderMatcher{
		Name:                 strings.ToLower(name),
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: sm},
	}, nil
}

// parseDuration reads a Gateway API duration (GEP-2257: a subset of Go's syntax).
func parseDuration(d *gwv1.Duration) (*durationpb.Duration, error) {
	if d == nil {
		return nil, nil
	}
	v, err := time.ParseDuration(string(*d))
	if err != nil || v < 0 {
		return nil, fmt.Errorf("duration %q is not valid", *d)
	}
	return durationpb.New(v), nil
}
