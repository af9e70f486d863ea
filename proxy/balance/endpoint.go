// Package balance picks an upstream endpoint per request: power of two
// choices over a peak latency EWMA (Linkerd's algorithm, as in tower's
// PeakEwma) by default, or round robin, or weighted random; and ejects
// endpoints that keep failing (outlier detection).
package balance

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// DecayTime is the EWMA's time constant: old samples weigh e^-1 after it.
const DecayTime = 10 * time.Second

// defaultRTT is assumed for an endpoint without samples, so new endpoints get traffic.
const defaultRTT = float64(time.Millisecond)

// failurePenalty is added to a failed attempt's latency so that an endpoint
// that fails fast does not look fast and attract all traffic.
const failurePenalty = float64(100 * time.Millisecond)

// Endpoint is one upstream address with its load and health state.
// All fields are safe for concurrent use; the hot path takes no locks.
type Endpoint struct {
	Addr   string
	Weight uint32
	// Identity is the SPIFFE ID discovery expects of a meshed endpoint, which is then reached
	// over mutual TLS; "" for a plaintext one.
	Identity string

	inflight atomic.Int64
	rttBits  atomic.Uint64 // float64 ns, peak EWMA
	stamp    atomic.Int64  // unix ns of the last sample

	ejectedUntil atomic.Int64 // unix ns; 0 when in rotation

	mu           sync.Mutex // guards the outlier counters below
	consec5xx    int
	consecFail   int
	timesEjected int
}

// NewEndpoint returns an endpoint with no history.
func NewEndpoint(addr string, weight uint32) *Endpoint {
	if weight == 0 {
		weight = 1
	}
	e := &Endpoint{Addr: addr, Weight: weight}
	e.rttBits.Store(math.Float64bits(defaultRTT))
	e.stamp.Store(time.Now().UnixNano())
	return e
}

// Inflight is the number of requests now outstanding on the endpoint.
func (e *Endpoint) Inflight() int64 { return e.inflight.Load() }

// Start marks a request as outstanding; call Done when it ends.
func (e *Endpoint) Start() { e.inflight.Add(1) }

// Done ends a request and feeds its latency into the EWMA.
func (e *Endpoint) Done(latency time.Duration, failed bool) {
	e.inflight.Add(-1)
	sample := float64(latency)
	if failed {
		sample += failurePenalty
	}
	now := time.Now().UnixNano()
	prev := math.Float64frombits(e.rttBits.Load())
	elapsed := float64(now - e.stamp.Swap(now))
	var next float64
	if sample > prev {
		next = sample // peak-sensitive: react to a slowdown at once
	} else {
		decay := math.Exp(-elapsed / float64(DecayTime))
		next = prev*decay + sample*(1-decay)
	}
	e.rttBits.Store(math.Float64bits(next))
}

// Release ends a request without a latency sample: its outcome says nothing
// about the endpoint (the client left, or the route's timeout ended it).
func (e *Endpoint) Release() { e.inflight.Add(-1) }

// Cost is the decayed RTT estimate times outstanding requests + 1.
func (e *Endpoint) Cost(now int64) float64 {
	rtt := math.Float64frombits(e.rttBits.Load())
	elapsed := float64(now - e.stamp.Load())
	if elapsed > 0 {
		// An idle estimate decays toward zero so a once-slow endpoint is tried again.
		rtt *= math.Exp(-elapsed / float64(DecayTime))
	}
	return rtt * float64(e.inflight.Load()+1)
}

// Ejected reports whether outlier detection has taken the endpoint out.
func (e *Endpoint) Ejected(now int64) bool {
	u := e.ejectedUntil.Load()
	return u != 0 && now < u
}
