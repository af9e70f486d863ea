package h2relay

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/route"
)

var (
	errClientGone      = errors.New("client connection closed")
	errClientReset     = errors.New("client reset the stream")
	errUpstreamReset   = errors.New("upstream reset the stream")
	errUpstreamGone    = errors.New("upstream connection closed")
	errRouteTimeout    = errors.New("route timeout")
	errRequestBodyIdle = errors.New("request body idle timeout")
	errRefused         = errors.New("upstream refused the stream (GOAWAY)")
)

// stream is one client stream and the upstream stream it is relayed to. Both directions keep
// the data their destination's window does not yet admit (at most the window the relay
// advertised to the source), and credit the source as it leaves.
type stream struct {
	ss     *session
	id     uint32 // the client's stream ID
	up     *upConn
	upID   uint32 // 0 until the upstream stream is open
	isGRPC bool

	// request: client → upstream
	reqHeaders     []hpack.HeaderField // until the upstream stream opens
	reqPending     []byte
	reqEndPending  bool // the client ended its side; END_STREAM still to be sent upstream
	reqTrailers    []hpack.HeaderField
	reqEnded       bool // the client ended its side
	recvWindow     int32
	recvUnack      int32
	upWindow       int32 // what the upstream lets us send on this stream
	contentLength  int64
	bytesIn        int64
	lastClientData time.Time

	// response: upstream → client
	respStarted    bool // response HEADERS sent to the client
	respPending    []byte
	respEndPending bool
	respTrailers   []hpack.HeaderField
	respEnded      bool
	clientWindow   int32
	upUnack        int32
	bytesOut       int64

	// accounting
	start      time.Time
	method     string
	authority  string
	path       string
	rt         *route.Route
	target     *route.Target
	stats      *metrics.Route
	ep         *balance.Endpoint
	epDone     bool
	status     int
	grpcStatus int
	err        error
	reason     string
	timer      *time.Timer
	done       bool

	// retries (retry.go): the route's policy while the stream may still be retried
	policy            *route.Retry
	kept              []byte // the request body as received, for a replay
	keptTrailers      []hpack.HeaderField
	replayed          int32 // head of reqPending the client was already credited for
	attempts          int
	tried             []*balance.Endpoint
	sent              time.Time   // the current attempt's start
	attemptTimer      *time.Timer // the per-try timeout, or the backoff before the next attempt
	clientSawResponse bool        // an informational response went to the client
}

// forwardRequestData sends what the upstream's windows admit and keeps the rest.
func (st *stream) forwardRequestData(data []byte, end bool) {
	if end {
		st.reqEnded, st.reqEndPending = true, true
	}
	if st.upID == 0 || len(st.reqPending) > 0 {
		st.reqPending = append(st.reqPending, data...)
		st.drainRequest()
		return
	}
	u := st.up
	n := min(int32(len(data)), st.upWindow, u.w.sendWindow)
	if n > 0 {
		st.upWindow -= n
		u.w.sendWindow -= n
		last := int(n) == len(data)
		u.w.data(st.upID, last && st.reqEndPending, data[:n])
		if last && st.reqEndPending {
			st.reqEndPending = false
		}
		st.ss.creditClient(st, st.credit(n))
	}
	if rest := data[n:]; len(rest) > 0 {
		st.reqPending = append(st.reqPending, rest...)
	} else if st.reqEndPending {
		st.endRequestUpstream()
	}
	st.maybeDone()
}

// drainRequest sends kept request data (and then END_STREAM or trailers) as windows allow.
func (st *stream) drainRequest() {
	if st.upID == 0 || st.done {
		return
	}
	u := st.up
	if len(st.reqPending) > 0 {
		n := min(int32(len(st.reqPending)), st.upWindow, u.w.sendWindow)
		if n <= 0 {
			return
		}
		st.upWindow -= n
		u.w.sendWindow -= n
		last := int(n) == len(st.reqPending)
		endNow := last && st.reqEndPending && st.reqTrailers == nil
		u.w.data(st.upID, endNow, st.reqPending[:n])
		if endNow {
			st.reqEndPending = false
		}
		st.reqPending = st.reqPending[n:]
		if len(st.reqPending) == 0 {
			st.reqPending = nil
		}
		st.ss.creditClient(st, st.credit(n))
		if !last {
			return
		}
	}
	if st.reqEndPending {
		st.endRequestUpstream()
	}
	st.maybeDone()
}

// endRequestUpstream sends the request's end: its trailers, or an empty END_STREAM DATA frame.
func (st *stream) endRequestUpstream() {
	st.reqEndPending = false
	if st.reqTrailers != nil {
		st.up.w.headers(st.upID, true, st.reqTrailers)
		st.reqTrailers = nil
		return
	}
	st.up.w.data(st.upID, true, nil)
}

// forwardResponseData sends upstream DATA to the client as its windows admit.
func (st *stream) forwardResponseData(data []byte, end bool) {
	st.bytesOut += int64(len(data))
	if end {
		st.respEnded, st.respEndPending = true, true
	}
	w := st.ss.peer
	if len(st.respPending) == 0 && st.respStarted {
		// The usual case: the client's windows admit the frame, which goes straight into the
		// client's write buffer; only the rest is kept.
		n := min(int32(len(data)), st.clientWindow, w.sendWindow)
		if n > 0 {
			st.clientWindow -= n
			w.sendWindow -= n
			last := int(n) == len(data)
			endNow := last && st.respEndPending
			w.data(st.id, endNow, data[:n])
			if endNow {
				st.respEndPending = false
			}
			st.up.creditUpstream(st, n)
			data = data[n:]
		}
	}
	st.respPending = append(st.respPending, data...)
	st.drainResponse()
}

// drainResponse sends kept response data (then END_STREAM or trailers) as windows allow, and
// credits the upstream for what left.
func (st *stream) drainResponse() {
	if st.done || !st.respStarted {
		return
	}
	w := st.ss.peer
	if len(st.respPending) > 0 {
		n := min(int32(len(st.respPending)), st.clientWindow, w.sendWindow)
		if n <= 0 {
			return
		}
		st.clientWindow -= n
		w.sendWindow -= n
		last := int(n) == len(st.respPending)
		endNow := last && st.respEndPending && st.respTrailers == nil
		w.data(st.id, endNow, st.respPending[:n])
		if endNow {
			st.respEndPending = false
		}
		st.respPending = st.respPending[n:]
		if len(st.respPending) == 0 {
			st.respPending = st.respPending[:0:0]
		}
		st.up.creditUpstream(st, n)
		if !last {
			return
		}
	}
	if st.respEndPending {
		st.respEndPending = false
		if st.respTrailers != nil {
			w.headers(st.id, true, st.respTrailers)
			st.respTrailers = nil
		} else {
			w.data(st.id, true, nil)
		}
	}
	st.maybeDone()
}

// maybeDone ends a stream whose both sides have been forwarded completely.
func (st *stream) maybeDone() {
	if st.done || !st.reqEnded || st.reqEndPending || len(st.reqPending) > 0 ||
		!st.respEnded || st.respEndPending || len(st.respPending) > 0 {
		return
	}
	st.finish()
}

func (st *stream) finish() {
	st.done = true
	st.stopTimers()
	st.endpointDone(balance.Success)
	st.ss.removeStream(st)
}

// endpointDone tells the balancer and outlier detection how the endpoint did, once.
func (st *stream) endpointDone(r balance.Result) {
	if st.ep == nil || st.epDone {
		return
	}
	st.epDone = true
	c := st.target.Cluster
	if r == balance.NotEndpoint {
		st.ep.Release()
	} else {
		st.ep.Done(time.Since(st.sent), r != balance.Success)
	}
	if c.Outlier.Record(c.Endpoints, st.ep, r) {
		st.stats.Ejections.Inc()
	}
}

// fail ends a stream early: before the response started the client gets an error answer
// (gRPC: a trailers-only status), after it a reset; the upstream stream, if open, is reset.
// code 0 means the client connection is gone and nothing is written to it.
func (st *stream) fail(err error, code http2.ErrCode) {
	if st.done {
		return
	}
	if st.retryAfterFailure(err, failureResult(err)) {
		return
	}
	st.err = err
	if st.upID != 0 && !st.respEnded || st.upID != 0 && !st.reqEnded {
		upCode := http2.ErrCodeCancel
		if errors.Is(err, errClientReset) {
			upCode = code
		}
		if !errors.Is(err, errUpstreamReset) && !errors.Is(err, errUpstreamGone) && !errors.Is(err, errRefused) {
			st.up.w.reset(st.upID, upCode)
		}
	}
	switch {
	case errors.Is(err, errClientGone), errors.Is(err, errClientReset):
		st.status = 499
		st.reason = "client_disconnect"
		st.endpointDone(balance.NotEndpoint)
	case !st.respStarted && (errors.Is(err, errRouteTimeout) || errors.Is(err, errUpstreamGone) ||
		errors.Is(err, errUpstreamReset) || errors.Is(err, errRequestBodyIdle) || errors.Is(err, errRefused) ||
		errors.Is(err, errPerTryTimeout)):
		status := http.StatusBadGateway
		switch {
		case errors.Is(err, errPerTryTimeout): // the endpoint's 504, as on the HTTP path
			status = http.StatusGatewayTimeout
			st.endpointDone(balance.Status5xx)
		case errors.Is(err, errRouteTimeout):
			status = http.StatusGatewayTimeout
			st.reason = "route_timeout"
			st.endpointDone(balance.Status5xx)
		case errors.Is(err, errRequestBodyIdle):
			status = http.StatusRequestTimeout
			st.reason = "request_body_timeout"
			st.endpointDone(balance.NotEndpoint)
		default:
			st.reason = "upstream_reset"
			st.endpointDone(balance.ConnectFailure)
		}
		if errors.Is(err, errRefused) {
			// Nothing reached the upstream: the client may retry the stream anywhere.
			st.status = 0
			st.ss.peer.reset(st.id, http2.ErrCodeRefusedStream)
		} else {
			st.replyError(status)
		}
	default:
		if st.respStarted {
			switch {
			case errors.Is(err, errRouteTimeout), errors.Is(err, errPerTryTimeout):
				st.reason = "route_timeout"
			case errors.Is(err, errRequestBodyIdle):
				st.reason = "request_body_timeout"
			case errors.Is(err, errUpstreamReset), errors.Is(err, errUpstreamGone):
				st.reason = "upstream_reset"
			default:
				st.reason = "bad_request_body"
			}
		} else if st.status == 0 {
			st.status = http.StatusBadRequest
			st.reason = "bad_request_body"
		}
		st.endpointDone(balance.NotEndpoint)
		st.ss.peer.reset(st.id, code)
	}
	st.done = true
	st.stopTimers()
	st.ss.removeStream(st)
}

// failureResult is what an endpoint learns from an attempt that failed with err.
func failureResult(err error) balance.Result {
	switch {
	case errors.Is(err, errPerTryTimeout):
		return balance.Status5xx
	case errors.Is(err, errUpstreamReset), errors.Is(err, errUpstreamGone), errors.Is(err, errRefused):
		return balance.ConnectFailure
	}
	return balance.NotEndpoint // the client's doing, or the route's own timeout
}

// replyError answers the client as the HTTP path does: gRPC clients a trailers-only status,
// others a short text body.
func (st *stream) replyError(code int) {
	st.status = code
	w := st.ss.peer
	if st.isGRPC {
		g := grpcStatusFor(code)
		st.grpcStatus = g
		w.headers(st.id, true, []hpack.HeaderField{
			{Name: ":status", Value: "200"},
			{Name: "content-type", Value: "application/grpc"},
			{Name: "grpc-status", Value: strconv.Itoa(g)},
			{Name: "grpc-message", Value: grpcMessage(errorMessage(code))},
		})
	} else {
		body := "knit-proxy: " + errorMessage(code) + "\n"
		w.headers(st.id, false, []hpack.HeaderField{
			{Name: ":status", Value: strconv.Itoa(code)},
			{Name: "content-type", Value: "text/plain; charset=utf-8"},
			{Name: "x-content-type-options", Value: "nosniff"},
			{Name: "content-length", Value: strconv.Itoa(len(body))},
		})
		// A short body fits any window the client can have left at a stream's start.
		w.data(st.id, true, []byte(body))
		st.bytesOut = int64(len(body))
	}
	st.respStarted, st.respEnded = true, true
	if !st.reqEnded {
		// The answer is complete: the client need not send the rest of its body.
		w.reset(st.id, http2.ErrCodeNo)
	}
}

// record writes the metrics and the access log line of ended streams (outside the lock).
func (ss *session) record(done []*stream) {
	for _, st := range done {
		if st.stats == nil {
			continue
		}
		st.stats.Latency.Observe(time.Since(st.start).Seconds())
		if st.reason != "" {
			st.stats.Failed(st.status, st.grpcStatus, st.reason)
		} else {
			st.stats.Request(st.status, st.grpcStatus)
		}
		ss.srv.logAccess(st)
	}
}

// routeTimeout ends a stream that outlived its route's timeout.
func (st *stream) routeTimeout() {
	ss := st.ss
	ss.mu.Lock()
	if !st.done && !ss.closed {
		st.fail(errRouteTimeout, http2.ErrCodeCancel)
		ss.flushAll()
	}
	done := ss.takeFinished()
	ss.mu.Unlock()
	ss.record(done)
}
