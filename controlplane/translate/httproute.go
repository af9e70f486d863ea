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
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// compileHTTPRoute turns each rule of an HTTPRoute into Envoy routes, one per match. A rule knit
// cannot represent faithfully is dropped (a match it cannot express) or answers 500 (a filter it
// does not implement), and is named in the route's status.
func compileHTTPRoute(hr *gwv1.HTTPRoute, services map[serviceKey]*serviceView, g grants) *compiledRoute {
	cr := &compiledRoute{
		ref:     RouteRef{Kind: KindHTTPRoute, Namespace: hr.Namespace, Name: hr.Name},
		created: hr.CreationTimestamp.Time,
		rules:   len(hr.Spec.Rules),
	}
	b := newRuleBuilder(services, g, cr, hr.Spec.ParentRefs)
	for i := range hr.Spec.Rules {
		rule := &hr.Spec.Rules[i]
		entries, err := b.httpRule(i, rule)
		if err != nil {
			cr.invalid = append(cr.invalid, fmt.Sprintf("rule %d: %v", i, err))
		}
		cr.entries = append(cr.entries, entries...)
	}
	return cr
}

// httpRule compiles one rule. With an error and entries the rule answers 500; with an error and
// no entries it is dropped.
func (b *ruleBuilder) httpRule(index int, rule *gwv1.HTTPRouteRule) ([]entry, error) {
	matches := rule.Matches
	if len(matches) == 0 {
		matches = []gwv1.HTTPRouteMatch{{}}
	}
	type matched struct {
		match    *routev3.RouteMatch
		order    precedence
		isPrefix bool
	}
	var ms []matched
	for j := range matches {
		m, order, isPrefix, err := httpMatch(&matches[j])
		if err != nil {
			return nil, fmt.Errorf("match %d: %w", j, err)
		}
		b.place(&order, index, j)
		ms = append(ms, matched{m, order, isPrefix})
	}

	tmpl := &routev3.Route{}
	var ruleErr error
	var redirect *gwv1.HTTPRequestRedirectFilter
	var rewrite *gwv1.HTTPURLRewriteFilter
	for _, f := range rule.Filters {
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestHeaderModifier:
			addRouteHeaders(tmpl, f.RequestHeaderModifier, nil)
		case gwv1.HTTPRouteFilterResponseHeaderModifier:
			addRouteHeaders(tmpl, nil, f.ResponseHeaderModifier)
		case gwv1.HTTPRouteFilterRequestRedirect:
			redirect = f.RequestRedirect
		case gwv1.HTTPRouteFilterURLRewrite:
			rewrite = f.URLRewrite
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
			case gwv1.HTTPRouteFilterRequestHeaderModifier:
				headers[i].addRequest(f.RequestHeaderModifier)
			case gwv1.HTTPRouteFilterResponseHeaderModifier:
				headers[i].addResponse(f.ResponseHeaderModifier)
			default:
				ruleErr = fmt.Errorf("backendRef %s: filter %s is not supported on a backend", br.Name, f.Type)
			}
		}
	}
	if ruleErr == nil && redirect == nil && rule.SessionPersistence != nil {
		ruleErr = fmt.Errorf("sessionPersistence is not supported")
	}

	var action *routev3.RouteAction
	switch {
	case ruleErr != nil:
		tmpl.Action = direct500()
	case redirect != nil:
		ra, err := redirectAction(redirect)
		if err != nil {
			ruleErr = err
			tmpl.Action = direct500()
			break
		}
		tmpl.Action = &routev3.Route_Redirect{Redirect: ra}
	default:
		var dr *routev3.DirectResponseAction
		var only backendHeaders
		action, dr, only = b.resolveBackends(refs, headers)
		if dr != nil {
			tmpl.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
			break
		}
		only.applyTo(tmpl)
		if err := applyHTTPRuleOptions(action, rule, rewrite); err != nil {
			ruleErr = err
			tmpl.Action = direct500()
			break
		}
		tmpl.Action = &routev3.Route_Route{Route: action}
	}

	out := make([]entry, 0, len(ms))
	for j, m := range ms {
		r := proto.Clone(tmpl).(*routev3.Route)
		r.Name = routeName(b.route.ref, index, m.order.match)
		r.Match = m.match
		prefixRewrite := (redirect != nil && redirect.Path != nil && redirect.Path.Type == gwv1.PrefixMatchHTTPPathModifier) ||
			(redirect == nil && rewrite != nil && rewrite.Path != nil && rewrite.Path.Type == gwv1.PrefixMatchHTTPPathModifier)
		if prefixRewrite && !m.isPrefix && ruleErr == nil {
			return nil, fmt.Errorf("match %d: ReplacePrefixMatch needs a PathPrefix match", j)
		}
		out = append(out, entry{order: m.order, route: r})
	}
	return out, ruleErr
}

// place gives a match's precedence the identity of its route, rule and match: the tie-breakers
// after the match itself (oldest route, then namespace/name, then rule and match order).
func (b *ruleBuilder) place(order *precedence, rule, match int) {
	order.created, order.ns, order.name, order.kind = b.route.created, b.route.ref.Namespace, b.route.ref.Name, b.route.ref.Kind
	order.rule, order.match = rule, match
}

// addRouteHeaders adds a rule's request and response header modifiers (either may be nil) to
// the Envoy route.
func addRouteHeaders(tmpl *routev3.Route, request, response *gwv1.HTTPHeaderFilter) {
	add, remove := headerOptions(request)
	tmpl.RequestHeadersToAdd = append(tmpl.RequestHeadersToAdd, add...)
	tmpl.RequestHeadersToRemove = append(tmpl.RequestHeadersToRemove, remove...)
	add, remove = headerOptions(response)
	tmpl.ResponseHeadersToAdd = append(tmpl.ResponseHeadersToAdd, add...)
	tmpl.ResponseHeadersToRemove = append(tmpl.ResponseHeadersToRemove, remove...)
}

func direct500() *routev3.Route_DirectResponse {
	return &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 500}}
}

func routeName(ref RouteRef, rule, match int) string {
	return fmt.Sprintf("%s/%s/%s/rule/%d/match/%d", strings.ToLower(ref.Kind), ref.Namespace, ref.Name, rule, match)
}

// httpMatch converts one HTTPRouteMatch and says how it ranks (Gateway API precedence: exact
// path, then regex, then the longest prefix; then method, header count, query count).
func httpMatch(m *gwv1.HTTPRouteMatch) (*routev3.RouteMatch, precedence, bool, error) {
	var order precedence
	rm := &routev3.RouteMatch{}
	kind, value := gwv1.PathMatchPathPrefix, "/"
	if m.Path != nil {
		if m.Path.Type != nil {
			kind = *m.Path.Type
		}
		if m.Path.Value != nil {
			value = *m.Path.Value
		}
	}
	isPrefix := false
	switch kind {
	case gwv1.PathMatchExact:
		if !strings.HasPrefix(value, "/") {
			return nil, order, false, fmt.Errorf("exact path %q does not start with /", value)
		}
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: value}
		order.pathRank, order.pathLen = rankExact, len(value)
	case gwv1.PathMatchPathPrefix:
		isPrefix = true
		trimmed := strings.TrimRight(value, "/")
		if !strings.HasPrefix(value, "/") || strings.ContainsAny(value, "?#") {
			return nil, order, false, fmt.Errorf("path prefix %q is not an absolute path", value)
		}
		if trimmed == "" {
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
		} else {
			rm.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: trimmed}
		}
		order.pathRank, order.pathLen = rankPrefix, len(trimmed)
	case gwv1.PathMatchRegularExpression:
		if err := checkRegex(value); err != nil {
			return nil, order, false, fmt.Errorf("path: %w", err)
		}
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: value}}
		order.pathRank, order.pathLen = rankRegex, len(value)
	default:
		return nil, order, false, fmt.Errorf("path match type %q is not supported", kind)
	}
	if m.Method != nil {
		rm.Headers = append(rm.Headers, &routev3.HeaderMatcher{
			Name:                 ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: string(*m.Method)}}},
		})
		order.method = true
	}
	for _, h := range m.Headers {
		hm, err := headerMatcher(string(h.Name), h.Type != nil && *h.Type == gwv1.HeaderMatchRegularExpression, h.Value)
		if err != nil {
			return nil, order, false, err
		}
		if h.Type != nil && *h.Type != gwv1.HeaderMatchExact && *h.Type != gwv1.HeaderMatchRegularExpression {
			return nil, order, false, fmt.Errorf("header match type %q is not supported", *h.Type)
		}
		rm.Headers = append(rm.Headers, hm)
	}
	order.headers = len(m.Headers)
	for _, q := range m.QueryParams {
		if q.Type != nil && *q.Type != gwv1.QueryParamMatchExact && *q.Type != gwv1.QueryParamMatchRegularExpression {
			return nil, order, false, fmt.Errorf("query parameter match type %q is not supported", *q.Type)
		}
		sm, err := stringMatch(q.Type != nil && *q.Type == gwv1.QueryParamMatchRegularExpression, q.Value)
		if err != nil {
			return nil, order, false, fmt.Errorf("query parameter %s: %w", q.Name, err)
		}
		rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
			Name:                         string(q.Name),
			QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm},
		})
	}
	order.queries = len(m.QueryParams)
	return rm, order, isPrefix, nil
}

var redirectCodes = map[int]routev3.RedirectAction_RedirectResponseCode{
	301: routev3.RedirectAction_MOVED_PERMANENTLY,
	302: routev3.RedirectAction_FOUND,
	303: routev3.RedirectAction_SEE_OTHER,
	307: routev3.RedirectAction_TEMPORARY_REDIRECT,
	308: routev3.RedirectAction_PERMANENT_REDIRECT,
}

func redirectAction(f *gwv1.HTTPRequestRedirectFilter) (*routev3.RedirectAction, error) {
	ra := &routev3.RedirectAction{ResponseCode: routev3.RedirectAction_FOUND}
	if f.StatusCode != nil {
		code, ok := redirectCodes[*f.StatusCode]
		if !ok {
			return nil, fmt.Errorf("redirect status code %d is not supported", *f.StatusCode)
		}
		ra.ResponseCode = code
	}
	if f.Scheme != nil {
		ra.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: *f.Scheme}
	}
	if f.Hostname != nil {
		ra.HostRedirect = string(*f.Hostname)
	}
	if f.Port != nil {
		ra.PortRedirect = uint32(*f.Port)
	}
	if f.Path != nil {
		switch {
		case f.Path.Type == gwv1.FullPathHTTPPathModifier && f.Path.ReplaceFullPath != nil:
			ra.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: *f.Path.ReplaceFullPath}
		case f.Path.Type == gwv1.PrefixMatchHTTPPathModifier && f.Path.ReplacePrefixMatch != nil:
			ra.PathRewriteSpecifier = &routev3.RedirectAction_PrefixRewrite{PrefixRewrite: *f.Path.ReplacePrefixMatch}
		default:
			return nil, fmt.Errorf("redirect path modifier %q is not supported", f.Path.Type)
		}
	}
	return ra, nil
}

// applyHTTPRuleOptions adds URL rewrites, timeouts and retries to a route action.
func applyHTTPRuleOptions(a *routev3.RouteAction, rule *gwv1.HTTPRouteRule, rewrite *gwv1.HTTPURLRewriteFilter) error {
	if rewrite != nil {
		if rewrite.Hostname != nil {
			a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: string(*rewrite.Hostname)}
		}
		if p := rewrite.Path; p != nil {
			switch {
			case p.Type == gwv1.FullPathHTTPPathModifier && p.ReplaceFullPath != nil:
				a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
					Pattern:      &matcherv3.RegexMatcher{Regex: "^/.*$"},
					Substitution: *p.ReplaceFullPath,
				}
			case p.Type == gwv1.PrefixMatchHTTPPathModifier && p.ReplacePrefixMatch != nil:
				a.PrefixRewrite = *p.ReplacePrefixMatch
			default:
				return fmt.Errorf("URL rewrite path modifier %q is not supported", p.Type)
			}
		}
	}
	var perTry *durationpb.Duration
	if t := rule.Timeouts; t != nil {
		request, err := parseDuration(t.Request)
		if err != nil {
			return fmt.Errorf("timeouts.request: %w", err)
		}
		a.Timeout = request
		if perTry, err = parseDuration(t.BackendRequest); err != nil {
			return fmt.Errorf("timeouts.backendRequest: %w", err)
		}
	}
	if rule.Retry == nil {
		a.RetryPolicy = DefaultRetryPolicy()
		a.RetryPolicy.PerTryTimeout = perTry
		return nil
	}
	rp := &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,reset", PerTryTimeout: perTry}
	if rule.Retry.Attempts != nil {
		if *rule.Retry.Attempts < 0 {
			return fmt.Errorf("retry.attempts %d is negative", *rule.Retry.Attempts)
		}
		rp.NumRetries = wrapperspb.UInt32(uint32(*rule.Retry.Attempts))
	}
	if len(rule.Retry.Codes) > 0 {
		rp.RetryOn += ",retriable-status-codes"
		for _, c := range rule.Retry.Codes {
			rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, uint32(c))
		}
	}
	if rule.Retry.Backoff != nil {
		backoff, err := parseDuration(rule.Retry.Backoff)
		if err != nil {
			return fmt.Errorf("retry.backoff: %w", err)
		}
		if backoff.AsDuration() > 0 {
			rp.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: backoff}
		}
	}
	a.RetryPolicy = rp
	return nil
}

// DefaultRetryPolicy is the retry policy of a route that sets none (a rule without `retry`, and
// the catch-all of a Service port without routes): two more tries, on another endpoint as the
// balancer picks, when the connection failed or was reset before a response, as Istio's default.
// It covers an endpoint that has just gone (a pod rolled by an upgrade or a deployment) before
// the proxies hear of it. The proxy retries only idempotent methods, within the cluster's retry
// budget.
func DefaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,reset", NumRetries: wrapperspb.UInt32(defaultRetries)}
}

const defaultRetries = 2
