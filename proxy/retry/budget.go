// Package retry decides whether a failed attempt may be tried again: a
// budget shared by a cluster (so retries cannot multiply an overload) and a
// jittered exponential backoff between attempts.
package retry

import (
	"math/rand/v2"
	"sync"
	"time"
)

// window is how far back the budget looks (Finagle's and Linkerd's TTL).
const window = 10 * time.Second

const buckets = 10

// Budget allows retries up to Ratio of recent requests plus MinPerSecond,
// counted over a sliding 10s window.
type Budget struct {
	ratio        float64
	minPerSecond float64

	mu      sync.Mutex
	slot    [buckets]bucket
	nowFunc func() time.Time
}

type bucket struct {
	sec               int64
	requests, retries float64
}

// NewBudget returns a budget; ratio 0.2 means 20% extra load at most.
func NewBudget(ratio, minPerSecond float64) *Budget {
	return &Budget{ratio: ratio, minPerSecond: minPerSecond, nowFunc: time.Now}
}

func (b *Budget) current() *bucket {
	sec := b.nowFunc().Unix()
	s := &b.slot[sec%buckets]
	if s.sec != sec {
		*s = bucket{sec: sec}
	}
	return s
}

// Request records a first attempt, which earns Ratio of a retry.
func (b *Budget) Request() {
	b.mu.Lock()
	b.current().requests++
	b.mu.Unlock()
}

// TryRetry takes one retry from the budget, or reports that it is spent.
func (b *Budget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.current()
	oldest := cur.sec - buckets + 1
	var reqs, retries float64
	for i := range b.slot {
		if s := &b.slot[i]; s.sec >= oldest {
			reqs += s.requests
			retries += s.retries
		}
	}
	allowed := b.minPerSecond*window.Seconds() + b.ratio*reqs
	if retries+1 > allowed {
		return false
	}
	cur.retries++
	return true
}

// Backoff returns the wait before retry number attempt (1-based): full
// jitter over an exponentially growing cap, so retries do not synchronise.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	c := base << min(attempt-1, 20)
	if c > max || c <= 0 {
		c = max
	}
	return time.Duration(rand.Int64N(int64(c)) + 1)
}
