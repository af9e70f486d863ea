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

package identity

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
)

// maxTrackedPods bounds the limiter's memory; beyond it, pods whose budget is full again are
// forgotten (they are indistinguishable from new ones).
const maxTrackedPods = 100_000

// podLimiter is a token bucket per pod UID.
type podLimiter struct {
	mu       sync.Mutex
	every    rate.Limit
	burst    int
	limiters map[types.UID]*rate.Limiter
}

func newPodLimiter(interval time.Duration, burst int) *podLimiter {
	return &podLimiter{every: rate.Every(interval), burst: burst, limiters: map[types.UID]*rate.Limiter{}}
}

func (p *podLimiter) allow(pod types.UID, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.limiters[pod]
	if !ok {
		if len(p.limiters) >= maxTrackedPods {
			p.forgetIdle(now)
		}
		l = rate.NewLimiter(p.every, p.burst)
		p.limiters[pod] = l
	}
	return l.AllowN(now, 1)
}

func (p *podLimiter) forgetIdle(now time.Time) {
	for uid, l := range p.limiters {
		if l.TokensAt(now) >= float64(p.burst) {
			delete(p.limiters, uid)
		}
	}
}
