// Package httpproxy is the HTTP request path, readable top to bottom in
// ServeHTTP: route → pick cluster → pick endpoint → forward (with retries) →
// copy the response → record metrics. It serves HTTP/1.1, h2c, HTTP/2 over
// TLS and gRPC alike, because net/http hands all of them to one Handler.
package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/knit-mesh/knit/proxy/accesslog"
	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/metrics"
	"github.com/knit-mesh/knit/proxy/retry"
	"github.com/knit-mesh/knit/proxy/route"
	"github.com/knit-mesh/knit/proxy/trace"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// Observers are the optional per-request side effects, swapped on reload.
type Observers struct {
	AccessLog *accesslog.Logger
	Tracer    *trace.Tracer
}

// State is what a reload swaps for a listener, read once per request.
type State struct {
	Direction config.Direction
	Routes    *route.Table
	// Virtual are the route tables of the virtual listeners, by destination,
	// for connections the listener matched to one (see WithDestination);
	// non-nil (maybe empty) exactly on captured outbound listeners.
	Virtual map[netip.AddrPort]*route.Table
	// TunnelIdle closes a CONNECT or Upgrade tunnel with no byte in either
	// direction for this long (the listener's tcpIdleTimeout); 0: never.
	TunnelIdle time.Duration
}

// Handler proxies the requests of one listener.
type Handler struct {
	State     atomic.Pointer[State]
	Observers *atomic.Pointer[Observers]
	NoRoute   *metrics.Route // counts requests that matched no route
	Log       logr.Logger
	tunnels   tunnels
}

// retryBodyLimit is the largest request body buffered so it can be replayed.
const retryBodyLimit = 64 << 10

var errNoEndpoint = errors.New("no endpoint available")

// ServeHTTP is the whole request path.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer h.logPanic(r)
	start := time.Now()

	// 1. route, on the normalised path (forwarded as routed)
	st := h.State.Load()
	if !route.NormalizePath(r) {
		h.NoRoute.Request(http.StatusBadRequest, grpcStatusIfGRPC(r, 13))
		writeError(w, r, http.StatusBadRequest, msgBadPath)
		return
	}
	rt := routeFrom(r.Context()) // set for passthrough (original destination) connections
	if r.Method == http.MethodConnect && (rt == nil || r.ProtoMajor != 1) {
		// Not a forward proxy: only a sidecar passes an app's CONNECT on to
		// where the app sent it (its HTTPS_PROXY).
		h.NoRoute.Request(http.StatusMethodNotAllowed, -1)
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE")
		writeError(w, r, http.StatusMethodNotAllowed, msgNoConnect)
		return
	}
	if rt == nil {
		rt = st.match(r)
	}
	if rt == nil {
		h.NoRoute.Request(http.StatusNotFound, grpcStatusIfGRPC(r, 12))
		writeError(w, r, http.StatusNotFound, msgNoRoute)
		return
	}
	peer := peerIdentityFrom(r.Context())
	if st.Direction == config.Inbound {
		// Only the sidecar says who the peer is: a value from outside is dropped.
		// The name is canonical: indexed directly, not canonicalized per request as Del and Set do.
		delete(r.Header, PeerIdentityHeader)
		if peer != "" {
			r.Header[PeerIdentityHeader] = []string{peer}
		}
	}
	// 2. traffic split: which cluster
	target := rt.PickTarget()
	stats := target.Stats(st.Direction)
	cluster := target.Cluster
	if rt.Actions != nil || cluster == nil {
		if h.answerLocally(w, r, start, st, rt, target) {
			return
		}
	}
	route.ModifyHeaders(r.Header, target.RequestHeaders) // the backend's own filters, after the route's

	// CONNECT and allowed upgrades become tunnels on their own connection.
	upgrade, refused := upgradeOf(r, rt)
	if refused != "" {
		stats.Request(http.StatusForbidden, -1)
		writeError(w, r, http.StatusForbidden, "upgrade to "+refused+" is not allowed on this route")
		return
	}
	if upgrade != "" || r.Method == http.MethodConnect {
		code, bytesOut, ep, err := h.tunnel(w, r, rt, cluster, upgrade, st.TunnelIdle)
		stats.Latency.Observe(time.Since(start).Seconds())
		stats.Request(code, -1)
		h.logAccess(start, st, rt, cluster, r, code, -1, 1, bytesOut, "", peer, ep, err)
		return
	}

	var out *http.Request
	var deadline time.Time
	if cluster.FastH1 {
		// Fast path: the inbound request is forwarded as is; the timeout is a
		// connection deadline, so no context or timer is allocated.
		out = r
		removeHopHeaders(r.Header)
		if rt.Timeout > 0 {
			deadline = start.Add(rt.Timeout)
		}
	} else {
		ctx := r.Context()
		if rt.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, rt.Timeout)
			defer cancel()
		}
		out = outboundRequest(ctx, r, cluster)
	}
	obs := h.Observers.Load()
	ctx, span := obs.Tracer.Start(out.Context(), r, out.Header, string(st.Direction), rt.Name)
	if span != nil && out != r {
		out = out.WithContext(ctx)
	}

	// 3+4. pick an endpoint and forward, retrying within the budget
	cb, _ := r.Body.(*clientBody)
	resp, ep, attempts, err := forward(out, out == r, cb, rt, cluster, stats, deadline)

	// 5. respond
	code, grpcStatus := 0, -1
	var bytesOut int64
	if err != nil {
		code = errorStatus(r, err)
		grpcStatus = grpcStatusIfGRPC(r, 14) // UNAVAILABLE
		writeError(w, r, code, ErrorMessage(code))
	} else if resp.StatusCode == http.StatusSwitchingProtocols {
		// Only tunnels (above) may switch protocols.
		resp.Body.Close()
		code, err = http.StatusBadGateway, errUnaskedSwitch
		writeError(w, r, code, ErrorMessage(code))
	} else {
		code = resp.StatusCode
		if rt.Actions != nil {
			route.ModifyHeaders(resp.Header, rt.Actions.ResponseHeaders)
		}
		route.ModifyHeaders(resp.Header, target.ResponseHeaders)
		bytesOut, grpcStatus, err = copyResponse(w, resp)
	}

	// 6. record
	elapsed := time.Since(start)
	stats.Latency.Observe(elapsed.Seconds())
	reason := failureReason(err)
	if reason != "" {
		stats.Failed(code, grpcStatus, reason)
	} else {
		stats.Request(code, grpcStatus)
	}
	trace.End(span, code, cluster.Name, err)
	h.logAccess(start, st, rt, cluster, r, code, grpcStatus, attempts, bytesOut, trace.TraceID(span), peer, ep, err)
	if err != nil && isUpstreamBodyError(err) {
		// The status line is gone; only a reset (HTTP/1: close without the
		// last chunk; HTTP/2: RST_STREAM) tells the client the body is cut.
		panic(http.ErrAbortHandler)
	}
}

// isUpstreamBodyError keeps errors.As's target (it escapes) off the
// success path.
func isUpstreamBodyError(err error) bool {
	var ube *upstreamBodyError
	return errors.As(err, &ube)
}

// logAccess writes the access log line, when the access log is on.
func (h *Handler) logAccess(start time.Time, st *State, rt *route.Route, cluster *upstream.Cluster, r *http.Request,
	code, grpcStatus, attempts int, bytesOut int64, traceID, peer string, ep *balance.Endpoint, err error) {
	obs := h.Observers.Load()
	if obs.AccessLog == nil {
		return
	}
	e := &accesslog.Entry{
		Start: start, Duration: time.Since(start), Direction: string(st.Direction), Route: rt.Name,
		Upstream: clusterName(cluster), Method: r.Method, Authority: r.Host, Path: r.URL.Path,
		Protocol: r.Proto, Status: code, GRPCStatus: grpcStatus, Attempts: attempts,
		BytesIn: max(r.ContentLength, 0), BytesOut: bytesOut, TraceID: traceID, PeerIdentity: peer,
	}
	if ep != nil {
		e.Endpoint = ep.Addr
	}
	if err != nil {
		e.Error = err.Error() // the detail goes to the operator's log, never to the client
	}
	obs.AccessLog.Log(e)
}

// logPanic logs a panic of the request path with its stack (net/http would
// print it to a discarded error log) and lets net/http close the connection.
func (h *Handler) logPanic(r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler { // a deliberate abort, not a bug
		panic(v)
	}
	h.Log.Error(fmt.Errorf("panic: %v", v), "recovered a panic in the request path; closing the client connection",
		"method", r.Method, "authority", r.Host, "path", r.URL.Path, "stack", string(debug.Stack()))
	panic(http.ErrAbortHandler)
}

func clusterName(c *upstream.Cluster) string {
	if c == nil {
		return ""
	}
	return c.Name
}

type routeKey struct{}

type peerKey struct{}

// PeerIdentityHeader carries an inbound request's mTLS peer (its SPIFFE ID) to the app. The
// sidecar removes it from every inbound request and sets it only for requests that arrived over
// mutual TLS, so the app may trust it.
const PeerIdentityHeader = "X-Knit-Peer-Identity"

// WithPeerIdentity records the SPIFFE ID of the connection's mTLS peer.
func WithPeerIdentity(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, peerKey{}, id)
}

func peerIdentityFrom(ctx context.Context) string {
	id, _ := ctx.Value(peerKey{}).(string)
	return id
}

// WithRoute makes every request of a connection use rt instead of the route
// table (the listener sets it for connections forwarded to their original
// destination).
func WithRoute(ctx context.Context, rt *route.Route) context.Context {
	return context.WithValue(ctx, routeKey{}, rt)
}

func routeFrom(ctx context.Context) *route.Route {
	rt, _ := ctx.Value(routeKey{}).(*route.Route)
	return rt
}

// outboundRequest reuses the inbound request's header map (the server hands
// it to us and never reads it again) minus hop-by-hop headers.
func outboundRequest(ctx context.Context, r *http.Request, c *upstream.Cluster) *http.Request {
	out := r.WithContext(ctx)
	out.URL = &url.URL{Scheme: c.Scheme(), Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	out.RequestURI = ""
	out.Close = false
	if r.ContentLength == 0 {
		out.Body = nil
	}
	removeHopHeaders(out.Header)
	return out
}

// forward sends the request to endpoints of the cluster until one answers
// without a retryable failure, the retry policy or budget says stop, or the
// deadline passes.
func forward(out *http.Request, fast bool, cb *clientBody, rt *route.Route, c *upstream.Cluster, stats *metrics.Route, deadline time.Time) (*http.Response, *balance.Endpoint, int, error) {
	policy := rt.Retry
	retryable := policy != nil && policy.Method(out.Method) && replayable(out)
	if retryable {
		c.Budget.Request()
	}
	// Retries go to endpoints not tried yet while there are any (see balance.PickAvoiding).
	var triedBuf [4]*balance.Endpoint
	tried := triedBuf[:0]
	for attempt := 1; ; attempt++ {
		ep := c.Pick(tried...)
		if ep == nil {
			return nil, nil, attempt, errNoEndpoint
		}
		ep.Start()
		sent := time.Now()
		var resp *http.Response
		var err error
		try := startTry(out, policy, sent, deadline, fast)
		resp, err = c.RoundTrip(try.req, ep, fast, try.deadline)
		var result balance.Result
		var expired bool
		if resp, err, expired = try.end(resp, err); expired {
			result = balance.Status5xx // the endpoint was too slow
		} else {
			err, result = classify(out, cb, resp, err, deadline)
		}
		if result == balance.NotEndpoint {
			ep.Release()
		} else {
			ep.Done(time.Since(sent), result != balance.Success)
		}
		if c.Outlier.Record(c.Endpoints, ep, result) {
			stats.Ejections.Inc()
		}
		if !retryable || attempt > policy.Attempts || result == balance.NotEndpoint || !shouldRetry(policy, resp, err) || out.Context().Err() != nil ||
			(!deadline.IsZero() && time.Now().After(deadline)) {
			return resp, ep, attempt, err
		}
		if !c.Budget.TryRetry() {
			stats.BudgetSpent.Inc()
			return resp, ep, attempt, err
		}
		if resp != nil {
			resp.Body.Close()
		}
		stats.Retries.Inc()
		tried = append(tried, ep)
		if !sleep(out.Context(), retry.Backoff(attempt, policy.BackoffBase, policy.BackoffMax)) {
			return nil, ep, attempt, out.Context().Err()
		}
		if !fast { // http.Transport may still hold the previous request
			out = out.Clone(out.Context())
		}
		if out.GetBody != nil {
			out.Body, _ = out.GetBody()
		}
	}
}

func shouldRetry(p *route.Retry, resp *http.Response, err error) bool {
	if errors.Is(err, errPerTryTimeout) { // as a 504 would be
		return p.RetriesStatus(http.StatusGatewayTimeout)
	}
	if err != nil {
		if upstream.IsConnectError(err) {
			return p.OnConnect || p.OnReset
		}
		return p.OnReset
	}
	return p.RetriesStatus(resp.StatusCode)
}

// replayable buffers a small body so a retry can send it again.
func replayable(out *http.Request) bool {
	if out.Body == nil || out.Body == http.NoBody {
		return true
	}
	if out.ContentLength <= 0 || out.ContentLength > retryBodyLimit {
		return false
	}
	buf := make([]byte, out.ContentLength)
	if _, err := readFull(out.Body, buf); err != nil {
		return false
	}
	out.Body.Close()
	out.GetBody = func() (ioReadCloser, error) { return bodyOf(buf), nil }
	out.Body, _ = out.GetBody()
	return true
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errorStatus maps a forwarding error to the status the client sees.
func errorStatus(r *http.Request, err error) int {
	var bodyErr *clientBodyError
	switch {
	case errors.Is(err, errNoEndpoint):
		return http.StatusServiceUnavailable
	case isLocalMeshFailure(err):
		return http.StatusServiceUnavailable // this proxy cannot present a certificate yet
	case errors.As(err, &bodyErr):
		if bodyErr.timeout {
			return http.StatusRequestTimeout
		}
		return http.StatusBadRequest
	case errors.Is(err, errClientGone):
		return 499 // the client went away (nginx's code)
	case errors.Is(err, errRouteTimeout), errors.Is(err, errPerTryTimeout):
		return http.StatusGatewayTimeout
	case upstream.IsHeadersTooLarge(err), upstream.IsConnectError(err):
		return http.StatusBadGateway // a dial timeout is the endpoint's failure, not a 504
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusGatewayTimeout
	case r.Context().Err() != nil:
		return 499
	}
	return http.StatusBadGateway
}

func isGRPC(r *http.Request) bool {
	return strings.HasPrefix(firstValue(r.Header, "Content-Type"), "application/grpc")
}

func grpcStatusIfGRPC(r *http.Request, s int) int {
	if isGRPC(r) {
		return s
	}
	return -1
}

// What clients are told. Never the error itself: dial errors name internal
// addresses (the access log and metrics keep the detail).
const (
	msgNoRoute   = "no route for this request"
	msgBadPath   = "invalid request path"
	msgNoConnect = "CONNECT is not supported here: knit-proxy is not a forward proxy"
)

var errUnaskedSwitch = errors.New("upstream switched protocols without being asked to")

// ErrorMessage is what a client is told for an answer the proxy gives itself with this status.
func ErrorMessage(code int) string {
	switch code {
	case http.StatusServiceUnavailable:
		return "no healthy upstream"
	case http.StatusGatewayTimeout:
		return "upstream request timeout"
	case 499:
		return "client closed the request"
	}
	return "upstream connect error or disconnect/reset before headers"
}

// writeError answers gRPC clients the gRPC way (trailers-only response with
// grpc-status), others with a short text body.
func writeError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h := w.Header()
	if isGRPC(r) {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(GRPCStatusFor(code)))
		h.Set("Grpc-Message", GRPCMessage(msg))
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte("knit-proxy: " + msg + "\n"))
}

// GRPCMessage percent-encodes a grpc-message value as the gRPC HTTP/2
// protocol requires: bytes outside printable ASCII, and "%", become %XX.
func GRPCMessage(msg string) string {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7E || c == '%' {
			b := make([]byte, 0, len(msg)+16)
			b = append(b, msg[:i]...)
			for ; i < len(msg); i++ {
				c := msg[i]
				if c < 0x20 || c > 0x7E || c == '%' {
					b = append(b, '%', hex[c>>4], hex[c&15])
				} else {
					b = append(b, c)
				}
			}
			return string(b)
		}
	}
	return msg
}
