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

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// compileGRPCRoute turns a GRPCRoute into Envoy routes: a method match is a match on the
// request path /<service>/<method>, and its backends' clusters speak HTTP/2.
func compileGRPCRoute(gr *gwv1.GRPCRoute, services map[serviceKey]*serviceView, g grants) *compiledRoute {
	cr := &compiledRoute{
		ref:     RouteRef{Kind: KindGRPCRoute, Namespace: gr.Namespace, Name: gr.Name},
		created: gr.CreationTimestamp.Time,
		rules:   len(gr.Spec.Rules),
		grpc:    true,
	}
	b := newRuleBuilder(services, g, cr, gr.Spec.ParentRefs)
	for i := range gr.Spec.Rules {
		entries, err := b.grpcRule(i, &gr.Spec.Rules[i])
		if err != nil {
			cr.invalid = append(cr.invalid, fmt.Sprintf("rule %d: %v", i, err))
		}
		cr.entries = append(cr.entries, entries...)
	}
	return cr
}

func (b *ruleBuilder) grpcRule(index int, rule *gwv1.GRPCRouteRule) ([]entry, error) {
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gwv1.GRPCRouteMatch{{}}
	}
	type matched struct {
		match *routev3.RouteMatch
		order precedence
	}
	var ms []matched
	for j := range matches {
		m, order, err := grpcMatch(&matches[j])
		if err != nil {
			return nil, fmt.Errorf("match %d: %w", j, err)
		}
		b.place(&order, index, j)
		ms = append(ms, matched{m, order})
	}
	tmpl := &routev3.Route{}
	var ruleErr error
	for _, f := range rule.Filters {
		switch f.Type {
		case gwv1.GRPCRouteFilterRequestHeaderModifier:
			addRouteHeaders(tmpl, f.RequestHeaderModifier, nil)
		case gwv1.GRPCRouteFilterResponseHeaderModifier:
			addRouteHeaders(tmpl, nil, f.ResponseHeaderModifier)
		default:
			ruleErr = fmt.Errorf("filter %s is not supported", f.Type)
		}
	}
	refs := make([]gwv1.BackendRef, 0, len(rule.BackendRefs))
	headers := make([]backendHeaders, len(rule.BackendRefs))
	for i, br := range rule.BackendRefs {
		refs = append(refs, br.BackendRef)
		for _, f := range br.Filters {
			switch f.Type {
			case gwv1.GRPCRouteFilterRequestHeaderModifier:
				headers[i].addRequest(f.RequestHeaderModifier)
			case gwv1.GRPCRouteFilterResponseHeaderModifier:
				headers[i].addResponse(f.ResponseHeaderModifier)
			default:
				ruleErr = fmt.Errorf("backendRef %s: filter %s is not supported on a backend", br.Name, f.Type)
			}
		}
	}
	if ruleErr == nil && rule.SessionPersistence != nil {
		ruleErr = fmt.Errorf("sessionPersistence is not supported")
	}
	if ruleErr != nil {
		tmpl.Action = direct500()
	} else if action, dr, only := b.resolveBackends(refs, headers); dr != nil {
		tmpl.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
	} else {
		only.applyTo(tmpl)
		tmpl.Action = &routev3.Route_Route{Route: action}
	}
	out := make([]entry, 0, len(ms))
	for _, m := range ms {
		r := proto.Clone(tmpl).(*routev3.Route)
		r.Name = routeName(b.route.ref, index, m.order.match)
		r.Match = m.match
		out = append(out, entry{order: m.order, route: r})
	}
	return out, ruleErr
}

// anySegment matches one path segment: a service or method the match leaves open.
const anySegment = "[^/]+"

// grpcMatch converts a GRPCRouteMatch. Exact service and method is an exact path; a service
// alone is a path prefix; anything else (a method alone, or regular expressions) is a regex.
func grpcMatch(m *gwv1.GRPCRouteMatch) (*routev3.RouteMatch, precedence, error) {
	var order precedence
	rm := &routev3.RouteMatch{}
	if mm := m.Method; mm == nil {
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		order.pathRank = rankPrefix
	} else {
		regex := mm.Type != nil && *mm.Type == gwv1.GRPCMethodMatchRegularExpression
		if mm.Type != nil && !regex && *mm.Type != gwv1.GRPCMethodMatchExact {
			return nil, order, fmt.Errorf("method match type %q is not supported", *mm.Type)
		}
		svc, method := ptrString(mm.Service), ptrString(mm.Method)
		switch {
		case svc == "" && method == "":
			return nil, order, fmt.Errorf("a method match needs a service or a method")
		case !regex && svc != "" && method != "":
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: "/" + svc + "/" + method}
			order.pathRank, order.pathLen = rankExact, len(svc)+len(method)+2
		case !regex && method == "":
			rm.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/" + svc}
			order.pathRank, order.pathLen = rankPrefix, len(svc)+1
		default:
			svcRe, methodRe := anySegment, anySegment
			if svc != "" {
				svcRe = quoteUnless(regex, svc)
			}
			if method != "" {
				methodRe = quoteUnless(regex, method)
			}
			re := "/" + svcRe + "/" + methodRe
			if err := checkRegex(re); err != nil {
				return nil, order, fmt.Errorf("method: %w", err)
			}
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}
			order.pathRank, order.pathLen = rankRegex, len(svc)+len(method)
		}
	}
	for _, h := range m.Headers {
		if h.Type != nil && *h.Type != gwv1.GRPCHeaderMatchExact && *h.Type != gwv1.GRPCHeaderMatchRegularExpression {
			return nil, order, fmt.Errorf("header match type %q is not supported", *h.Type)
		}
		hm, err := headerMatcher(string(h.Name), h.Type != nil && *h.Type == gwv1.GRPCHeaderMatchRegularExpression, h.Value)
		if err != nil {
			return nil, order, err
		}
		rm.Headers = append(rm.Headers, hm)
	}
	order.headers = len(m.Headers)
	return rm, order, nil
}

func quoteUnless(regex bool, s string) string {
	if regex {
		return "(?:" + s + ")"
	}
	return regexp.QuoteMeta(s)
}
