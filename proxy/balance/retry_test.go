package balance

import (
	"testing"
	"time"

	"github.com/knit-mesh/knit/proxy/config"
)

// Every picker, given what a request has tried, picks an endpoint it has not while one is in
// rotation, even where it would by itself prefer the tried one (cheaper, heavier, next in turn).
func TestPickAvoidingPrefersEndpointsNotTried(t *testing.T) {
	for _, policy := range []config.LBPolicy{config.LBP2CEWMA, config.LBRoundRobin, config.LBWeighted} {
		t.Run(string(policy), func(t *testing.T) {
			e := []*Endpoint{NewEndpoint("a", 100), NewEndpoint("b", 1), NewEndpoint("c", 1)}
			for range 20 { // b and c look slow and busy: P2C alone prefers a
				e[1].Start()
				e[2].Start()
			}
			p := NewPicker(policy)
			for range 300 {
				if got := PickAvoiding(p, e, []*Endpoint{e[0]}); got == e[0] {
					t.Fatal("picked the endpoint already tried while two others are in rotation")
				}
				if got := PickAvoiding(p, e, []*Endpoint{e[0], e[2]}); got != e[1] {
					t.Fatalf("picked %s, want b, the one endpoint not tried", got.Addr)
				}
			}
			// All tried: any endpoint, as a first attempt would pick.
			if got := PickAvoiding(p, e, e); got == nil {
				t.Fatal("no endpoint once all were tried")
			}
			// The only one not tried is ejected: back to those in rotation.
			e[1].ejectedUntil.Store(time.Now().Add(time.Minute).UnixNano())
			for range 100 {
				if got := PickAvoiding(p, e, []*Endpoint{e[0], e[2]}); got == e[1] {
					t.Fatal("picked an ejected endpoint while tried ones are in rotation")
				}
			}
		})
	}
}

func TestPickAvoidingWithNothingTriedDoesNotAllocate(t *testing.T) {
	e := eps(3)
	p := P2CEWMA{}
	if n := testing.AllocsPerRun(100, func() { PickAvoiding(p, e, nil) }); n != 0 {
		t.Fatalf("%v allocations per first pick", n)
	}
}
