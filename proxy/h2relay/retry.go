package h2relay

import (
	"errors"
	"net/http"
	"time"

	"golang.org/x/net/http2"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/retry"
	"github.com/knit-mesh/knit/proxy/route"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// retryBodyLimit is the most request body a stream keeps so a retry can send it again (the
// HTTP path's limit); a longer body is forwarded once.
const retryBodyLimit = 64 << 10

var (
	errPerTryTimeout = errors.New("per-try timeout")
	errNoEndpoint    = errors.New("no endpoint available")
)

// startRetries makes a new stream retryable when its route retries its method and its body,
// if any, may fit what is kept for a replay; the first attempt counts in the cluster's budget.
func (st *stream) startRetries(p *route.Retry) {
	st.attempts = 1
	if p == nil || !p.Method(st.method) || st.contentLength > retryBodyLimit {
		return
	}
	st.policy = p
	st.target.Cluster.Budget.Request()
}

// keep copies request body bytes for a replay; a body that outgrows the limit is not retried.
func (st *stream) keep(data []byte) {
	if len(st.kept)+len(data) > retryBodyLimit {
		st.policy, st.kept = nil, nil
		return
	}
	st.kept = append(st.kept, data...)
}

// startTry bounds the attempt by the policy's per-try timeout when it ends before the route's
// own (as the HTTP path, it covers the whole response, body included).
func (st *stream) startTry() {
	p := st.rt.Retry
	if p == nil || p.PerTry <= 0 {
		return
	}
	if st.rt.Timeout > 0 && !st.start.Add(st.rt.Timeout).After(time.Now().Add(p.PerTry)) {
		return
	}
	attempt := st.attempts
	st.attemptTimer = time.AfterFunc(p.PerTry, func() { st.tryExpired(attempt) })
}

func (st *stream) tryExpired(attempt int) {
	ss := st.ss
	ss.mu.Lock()
	if !st.done && !ss.closed && st.attempts == attempt && st.up != nil {
		st.fail(errPerTryTimeout, http2.ErrCodeCancel)
		ss.flushAll()
	}
	done := ss.takeFinished()
	ss.mu.Unlock()
	ss.record(done)
}

// mayRetry says whether the stream may go to another attempt at all: nothing of the response
// reached the client, all of the request body received so far is kept (the policy is dropped
// when it outgrows the limit), attempts and time are left. A body still arriving is sent to
// the next attempt as it comes, after what was kept.
func (st *stream) mayRetry() bool {
	p := st.policy
	return p != nil && !st.clientSawResponse && !st.respStarted && !st.ss.closed &&
		st.attempts <= p.Attempts &&
		(st.rt.Timeout <= 0 || time.Now().Before(st.start.Add(st.rt.Timeout)))
}

// shouldRetryFailure says whether the policy retries an attempt that failed before any response
// header: a refused stream was not processed by the upstream and is always retried.
func shouldRetryFailure(p *route.Retry, err error) bool {
	switch {
	case errors.Is(err, errRefused):
		return true
	case errors.Is(err, errPerTryTimeout): // as a 504 would be
		return p.RetriesStatus(http.StatusGatewayTimeout)
	case upstream.IsConnectError(err):
		return p.OnConnect || p.OnReset
	case errors.Is(err, errUpstreamReset), errors.Is(err, errUpstreamGone):
		return p.OnReset
	}
	return false
}

// retryAfterFailure starts the next attempt of a stream whose attempt failed with err, when
// the policy and budget allow; result is what the endpoint learns from the failure.
func (st *stream) retryAfterFailure(err error, result balance.Result) bool {
	if result == balance.NotEndpoint || !st.mayRetry() || !shouldRetryFailure(st.policy, err) {
		return false
	}
	// The upstream already ended a reset, refused or broken stream; anything else is cancelled.
	cancel := !errors.Is(err, errUpstreamReset) && !errors.Is(err, errUpstreamGone) && !errors.Is(err, errRefused)
	return st.retry(result, cancel)
}

// retryAfterStatus starts the next attempt instead of forwarding a response whose status the
// policy retries. upstreamDone: the upstream stream is closed on both sides already.
func (st *stream) retryAfterStatus(code int, upstreamDone bool) bool {
	if !st.mayRetry() || !st.policy.RetriesStatus(code) {
		return false
	}
	result := balance.Success
	if code >= 500 {
		result = balance.Status5xx
	}
	return st.retry(result, !upstreamDone)
}

// retry ends the current attempt (the endpoint learns result; its upstream stream is reset when
// cancel says so) and schedules the next after the policy's backoff, on an endpoint not tried
// yet while there is one. The retry budget may refuse it.
func (st *stream) retry(result balance.Result, cancel bool) bool {
	stats := st.stats
	if !st.target.Cluster.Budget.TryRetry() {
		stats.BudgetSpent.Inc()
		return false
	}
	stats.Retries.Inc()
	st.endpointDone(result)
	st.tried = append(st.tried, st.ep)
	st.ep, st.epDone = nil, false
	if u := st.up; u != nil {
		if st.upID != 0 {
			if cancel {
				u.w.reset(st.upID, http2.ErrCodeCancel)
			}
			delete(u.streams, st.upID)
			u.closeIfDone()
		}
		st.up, st.upID = nil, 0 // a stream still waiting for the dial is not opened (upConn.open)
	}
	if st.attemptTimer != nil {
		st.attemptTimer.Stop()
	}
	// The request again from its start: the bytes the client was credited for already are
	// sent again without crediting it twice.
	uncredited := len(st.reqPending) - int(st.replayed)
	st.reqPending = st.kept[:len(st.kept):len(st.kept)]
	st.replayed = int32(len(st.kept) - uncredited)
	st.reqEndPending, st.reqTrailers = st.reqEnded, st.keptTrailers
	st.status, st.grpcStatus, st.respEnded, st.respEndPending = 0, -1, false, false
	st.respPending, st.respTrailers, st.upUnack, st.bytesOut = nil, nil, 0, 0
	st.attempts++
	backoff := retry.Backoff(st.attempts-1, st.policy.BackoffBase, st.policy.BackoffMax)
	st.attemptTimer = time.AfterFunc(backoff, st.nextAttempt)
	return true
}

// nextAttempt opens the stream on the endpoint picked for the retry.
func (st *stream) nextAttempt() {
	ss := st.ss
	ss.mu.Lock()
	if !st.done && !ss.closed {
		c := st.target.Cluster
		if ep := c.Pick(st.tried...); ep == nil {
			st.err = errNoEndpoint
			st.stopTimers()
			st.replyLocal(http.StatusServiceUnavailable, 14)
		} else {
			ep.Start()
			st.ep = ep
			st.startTry()
			ss.upstreamFor(c, ep).attach(st)
		}
		ss.flushAll()
	}
	done := ss.takeFinished()
	ss.mu.Unlock()
	ss.record(done)
}

// credit tells how much of n request bytes just sent upstream the client is still owed credit
// for: the head of a replayed body was credited on its first attempt.
func (st *stream) credit(n int32) int32 {
	r := min(n, st.replayed)
	st.replayed -= r
	return n - r
}

// stopRetrying drops what was kept for a retry once none can happen (the response began), so
// a stream holds its request body only until its answer starts.
func (st *stream) stopRetrying() {
	st.policy, st.kept, st.keptTrailers, st.reqHeaders = nil, nil, nil, nil
}

func (st *stream) stopTimers() {
	if st.timer != nil {
		st.timer.Stop()
	}
	if st.attemptTimer != nil {
		st.attemptTimer.Stop()
	}
}
