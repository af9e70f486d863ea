package balance

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/knit-mesh/knit/proxy/config"
)

// Picker chooses an endpoint; it never returns nil for a non-empty set.
type Picker interface {
	Pick(eps []*Endpoint) *Endpoint
}

// NewPicker returns the picker for a cluster's policy.
func NewPicker(p config.LBPolicy) Picker {
	switch p {
	case config.LBRoundRobin:
		return &RoundRobin{}
	case config.LBWeighted:
		return Weighted{}
	default:
		return P2CEWMA{}
	}
}

// available returns a random endpoint in rotation, trying a few times; when
// all look ejected it returns any (panic mode: some traffic beats none).
func randomAvailable(eps []*Endpoint, now int64) *Endpoint {
	n := len(eps)
	for range 2 * n {
		if e := eps[rand.IntN(n)]; !e.Ejected(now) {
			return e
		}
	}
	for _, e := range eps {
		if !e.Ejected(now) {
			return e
		}
	}
	return eps[rand.IntN(n)]
}

// P2CEWMA samples two endpoints and takes the one with the lower cost.
type P2CEWMA struct{}

func (P2CEWMA) Pick(eps []*Endpoint) *Endpoint {
	switch len(eps) {
	case 0:
		return nil
	case 1:
		return eps[0]
	}
	now := time.Now().UnixNano()
	// Two distinct indexes, so with two endpoints both are always compared.
	i := rand.IntN(len(eps))
	j := rand.IntN(len(eps) - 1)
	if j >= i {
		j++
	}
	a, b := eps[i], eps[j]
	if a.Ejected(now) {
		a = randomAvailable(eps, now)
	}
	if b.Ejected(now) {
		b = randomAvailable(eps, now)
	}
	if b.Cost(now) < a.Cost(now) {
		return b
	}
	return a
}

// RoundRobin walks the endpoints in order, skipping ejected ones.
type RoundRobin struct{ next atomic.Uint64 }

func (r *RoundRobin) Pick(eps []*Endpoint) *Endpoint {
	n := uint64(len(eps))
	if n == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	for range n {
		if e := eps[r.next.Add(1)%n]; !e.Ejected(now) {
			return e
		}
	}
	return eps[r.next.Add(1)%n]
}

// Weighted picks at random in proportion to endpoint weights.
type Weighted struct{}

func (Weighted) Pick(eps []*Endpoint) *Endpoint {
	if len(eps) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	var total uint64
	for _, e := range eps {
		if !e.Ejected(now) {
			total += uint64(e.Weight)
		}
	}
	if total == 0 {
		return eps[rand.IntN(len(eps))]
	}
	x := rand.Uint64N(total)
	for _, e := range eps {
		if e.Ejected(now) {
			continue
		}
		if x < uint64(e.Weight) {
			return e
		}
		x -= uint64(e.Weight)
	}
	return eps[len(eps)-1]
}
