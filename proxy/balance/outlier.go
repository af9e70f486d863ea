package balance

import (
	"time"

	"github.com/knit-mesh/knit/proxy/config"
)

// Result is how one attempt on an endpoint ended.
type Result uint8

const (
	Success        Result = iota
	Status5xx             // the endpoint answered with a 5xx
	ConnectFailure        // could not connect, or the connection broke
	// NotEndpoint: the attempt ended for a reason that says nothing about
	// the endpoint (the client left, the route's timeout, a bad request
	// body); it is not counted for or against the endpoint.
	NotEndpoint
)

// Outlier ejects endpoints after consecutive failures, for a time that grows
// with each ejection, never taking out more than MaxEjectionPercent.
type Outlier struct {
	cfg config.OutlierDetection
}

// NewOutlier returns nil when detection is off.
func NewOutlier(cfg *config.OutlierDetection) *Outlier {
	if cfg == nil || (cfg.Consecutive5xx == 0 && cfg.ConsecutiveConnectFailures == 0) {
		return nil
	}
	return &Outlier{cfg: *cfg}
}

// Record counts the result and reports whether it ejected the endpoint.
func (o *Outlier) Record(eps []*Endpoint, e *Endpoint, r Result) bool {
	if o == nil || r == NotEndpoint {
		return false
	}
	e.mu.Lock()
	switch r {
	case Success:
		e.consec5xx, e.consecFail = 0, 0
		e.mu.Unlock()
		return false
	case Status5xx:
		e.consec5xx++
	case ConnectFailure:
		e.consecFail++
	}
	trip := (o.cfg.Consecutive5xx > 0 && e.consec5xx >= o.cfg.Consecutive5xx) ||
		(o.cfg.ConsecutiveConnectFailures > 0 && e.consecFail >= o.cfg.ConsecutiveConnectFailures)
	now := time.Now().UnixNano()
	if !trip || e.Ejected(now) || !o.mayEject(eps, now) {
		e.mu.Unlock()
		return false
	}
	e.timesEjected++
	d := time.Duration(e.timesEjected) * o.cfg.BaseEjectionTime.D()
	if max := o.cfg.MaxEjectionTime.D(); d > max {
		d = max
	}
	e.ejectedUntil.Store(now + int64(d))
	e.consec5xx, e.consecFail = 0, 0
	e.mu.Unlock()
	return true
}

// mayEject keeps ejections within the percentage, but always allows the first
// one so a single bad endpoint among two can be ejected at 50%.
func (o *Outlier) mayEject(eps []*Endpoint, now int64) bool {
	ejected := 0
	for _, x := range eps {
		if x.Ejected(now) {
			ejected++
		}
	}
	if ejected == 0 && o.cfg.MaxEjectionPercent > 0 && len(eps) > 1 {
		return true
	}
	return (ejected+1)*100 <= o.cfg.MaxEjectionPercent*len(eps)
}
