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

package xds

import (
	"sync"
	"time"
)

// Defaults of the send budget.
const (
	// defaultSendBudget bounds the bytes of large responses sent and not yet answered.
	defaultSendBudget = 32 << 20
	// defaultLargeResponse is the size from which a response counts against the budget:
	// the small responses of everyday changes (an EndpointSlice) never wait.
	defaultLargeResponse = 64 << 10
	// defaultBudgetHold is how long an unanswered response holds its bytes: a proxy that never
	// answers does not stall the others.
	defaultBudgetHold = 30 * time.Second
)

// sendBudget bounds how many bytes of large responses (a new proxy's whole configuration) are
// sent and not yet acknowledged, over all streams. gRPC holds every response it was handed,
// encoded, until the proxy reads it: when a thousand proxies connect at once (a control-plane
// restart) they would otherwise all hold their whole configuration in the server's memory
// together (2.6 GB at 1000 proxies × 1000 Services in bench-controlplane). A response that does
// not fit waits, as a watch, without blocking any goroutine (a blocked stream could not read the
// acknowledgements that free the budget); it is sent when answers free enough.
type sendBudget struct {
	limit, large int64
	hold         time.Duration

	mu       sync.Mutex
	inFlight int64
	waiting  []budgetWaiter // oldest first
}

type budgetWaiter struct {
	c    *resourceCache
	w    *cacheWatch
	size int64
}

func newSendBudget(limit int64) *sendBudget {
	return &sendBudget{limit: limit, large: defaultLargeResponse, hold: defaultBudgetHold}
}

// tryAcquire takes size bytes for a response, and says how many it took (0 for a small
// response) or that the response must wait. A response larger than the whole budget goes
// alone. Newcomers queue behind the waiting ones unless woken says this is one of them.
func (b *sendBudget) tryAcquire(size int64, woken bool) (taken int64, ok bool) {
	if b == nil || size < b.large {
		return 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if (len(b.waiting) > 0 && !woken) || (b.inFlight > 0 && b.inFlight+size > b.limit) {
		return 0, false
	}
	b.inFlight += size
	return size, true
}

// wait queues a watch whose response of size bytes did not fit.
func (b *sendBudget) wait(c *resourceCache, w *cacheWatch, size int64) {
	b.mu.Lock()
	b.waiting = append(b.waiting, budgetWaiter{c: c, w: w, size: size})
	b.mu.Unlock()
}

// release returns bytes and lets the waiting watches that now fit try again.
func (b *sendBudget) release(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	if n == 0 && len(b.waiting) == 0 {
		b.mu.Unlock()
		return
	}
	b.inFlight -= n
	var wake []budgetWaiter
	free := b.limit - b.inFlight
	for len(b.waiting) > 0 && (b.waiting[0].size <= free || b.inFlight == 0 && len(wake) == 0) {
		wake = append(wake, b.waiting[0])
		free -= b.waiting[0].size
		b.waiting = b.waiting[1:]
	}
	b.mu.Unlock()
	unused := false
	for _, wt := range wake {
		if !wt.c.retry(wt.w) {
			unused = true // its stream ended or needs nothing now: the next one may go
		}
	}
	if unused {
		b.release(0)
	}
}
