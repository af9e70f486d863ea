package balance

import (
	"testing"
	"time"

	"github.com/knit-mesh/knit/proxy/config"
)

func eps(n int) []*Endpoint {
	out := make([]*Endpoint, n)
	for i := range out {
		out[i] = NewEndpoint(string(rune('a'+i)), uint32(i+1))
	}
	return out
}

func TestRoundRobinIsEven(t *testing.T) {
	e := eps(3)
	rr := &RoundRobin{}
	count := map[*Endpoint]int{}
	for range 300 {
		count[rr.Pick(e)]++
	}
	for _, x := range e {
		if count[x] != 100 {
			t.Fatalf("uneven: %v", count)
		}
	}
}

func TestWeightedFollowsWeights(t *testing.T) {
	e := eps(3) // weights 1, 2, 3
	count := map[*Endpoint]int{}
	for range 60000 {
		count[(Weighted{}).Pick(e)]++
	}
	for i, x := range e {
		want := 10000 * (i + 1)
		if d := count[x] - want; d > want/10 || d < -want/10 {
			t.Fatalf("endpoint %d got %d, want about %d", i, count[x], want)
		}
	}
}

func TestP2CAvoidsSlowAndBusy(t *testing.T) {
	e := eps(2)
	for range 20 {
		e[0].Start()
		e[0].Done(50*time.Millisecond, false)
		e[1].Start()
		e[1].Done(time.Millisecond, false)
	}
	count := map[*Endpoint]int{}
	for range 1000 {
		count[(P2CEWMA{}).Pick(e)]++
	}
	if count[e[1]] != 1000 {
		t.Fatalf("with two endpoints P2C compares both and must always pick the fast one: %v", count)
	}
	// Load counts too: many requests outstanding on the fast one make it costlier.
	for range 100 {
		e[1].Start()
	}
	if (P2CEWMA{}).Pick(e) != e[0] {
		t.Fatal("P2C ignored outstanding requests")
	}
}

func TestOutlierEjectsWithBackoffAndBound(t *testing.T) {
	e := eps(4)
	o := NewOutlier(&config.OutlierDetection{Consecutive5xx: 2, BaseEjectionTime: config.Duration(time.Minute),
		MaxEjectionTime: config.Duration(3 * time.Minute), MaxEjectionPercent: 50})
	if o.Record(e, e[0], Status5xx) {
		t.Fatal("ejected after one failure")
	}
	o.Record(e, e[0], Success) // success resets the streak
	o.Record(e, e[0], Status5xx)
	if !o.Record(e, e[0], Status5xx) {
		t.Fatal("not ejected after two consecutive 5xx")
	}
	first := time.Duration(e[0].ejectedUntil.Load() - time.Now().UnixNano())
	if first < 50*time.Second || first > time.Minute {
		t.Fatalf("first ejection lasts %v, want ~1m", first)
	}
	o.Record(e, e[1], ConnectFailure)
	o.Record(e, e[1], ConnectFailure) // connect failures have their own threshold (off here)
	o.Record(e, e[2], Status5xx)
	if !o.Record(e, e[2], Status5xx) {
		t.Fatal("second ejection (50% of 4) refused")
	}
	o.Record(e, e[3], Status5xx)
	if o.Record(e, e[3], Status5xx) {
		t.Fatal("third ejection exceeds maxEjectionPercent")
	}
	// Picking never returns an ejected endpoint while others are in rotation.
	for range 200 {
		if p := (P2CEWMA{}).Pick(e); p == e[0] || p == e[2] {
			t.Fatal("picked an ejected endpoint")
		}
	}
	// Second ejection of the same endpoint lasts longer (backoff), capped at max.
	e[0].ejectedUntil.Store(0)
	o.Record(e, e[0], Status5xx)
	o.Record(e, e[0], Status5xx)
	second := time.Duration(e[0].ejectedUntil.Load() - time.Now().UnixNano())
	if second < 110*time.Second {
		t.Fatalf("second ejection %v, want ~2m", second)
	}
}

// Attempts that end for reasons outside the endpoint neither eject it nor
// break a run of failures, and leave its latency estimate alone.
func TestNotEndpointResultsAreIgnored(t *testing.T) {
	o := NewOutlier(&config.OutlierDetection{ConsecutiveConnectFailures: 2, BaseEjectionTime: config.Duration(time.Minute),
		MaxEjectionTime: config.Duration(time.Hour), MaxEjectionPercent: 100})
	eps := []*Endpoint{NewEndpoint("a", 1), NewEndpoint("b", 1)}
	a := eps[0]
	for range 10 {
		if o.Record(eps, a, NotEndpoint) {
			t.Fatal("ejected for results that were not the endpoint's")
		}
	}
	o.Record(eps, a, ConnectFailure)
	o.Record(eps, a, NotEndpoint)
	if !o.Record(eps, a, ConnectFailure) {
		t.Fatal("a client-side result reset the endpoint's run of connect failures")
	}
	b := eps[1]
	before := b.Cost(time.Now().UnixNano())
	b.Start()
	b.Release()
	if b.Inflight() != 0 {
		t.Fatalf("inflight %d after Release", b.Inflight())
	}
	if after := b.Cost(time.Now().UnixNano()); after > before {
		t.Fatalf("Release raised the cost from %v to %v", before, after)
	}
}
