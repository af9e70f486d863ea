package balance

import (
	"slices"
	"time"
)

// PickAvoiding picks an endpoint for a retry: among the endpoints in rotation that this
// request has not tried yet, so that a retry after a refused connection, a reset or a 5xx
// goes to another endpoint rather than, by the luck of the draw, to the one that just failed
// (Envoy's previous_hosts retry predicate; Linkerd retries the same way). Only when every
// endpoint in rotation has been tried does it pick among all of them, as a first attempt
// would. With nothing tried it is p.Pick(eps), allocation-free.
func PickAvoiding(p Picker, eps, tried []*Endpoint) *Endpoint {
	if len(tried) == 0 || len(eps) < 2 {
		return p.Pick(eps)
	}
	now := time.Now().UnixNano()
	untried := make([]*Endpoint, 0, len(eps))
	for _, e := range eps {
		if !e.Ejected(now) && !slices.Contains(tried, e) {
			untried = append(untried, e)
		}
	}
	if len(untried) == 0 {
		return p.Pick(eps)
	}
	return p.Pick(untried)
}
