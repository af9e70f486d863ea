package h2relay

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/httpproxy"
	"github.com/knit-mesh/knit/proxy/route"
)

// clientHeaders opens a stream (a request's HEADERS) or ends one (trailers).
func (ss *session) clientHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if st := ss.streams[id]; st != nil {
		return ss.clientTrailers(st, f)
	}
	if id <= ss.lastID {
		return http2.ConnectionError(http2.ErrCodeStreamClosed) // HEADERS on a closed stream
	}
	ss.lastID = id
	if ss.goingAway {
		ss.peer.reset(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if len(ss.streams) >= maxConcurrentStreams {
		ss.peer.reset(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if f.Priority.StreamDep == id {
		ss.peer.reset(id, http2.ErrCodeProtocol)
		return nil
	}
	st := &stream{ss: ss, id: id, start: time.Now(), recvWindow: streamWindow, clientWindow: ss.peer.initWindow,
		grpcStatus: -1, contentLength: -1, lastClientData: time.Now()}
	st.reqEnded = f.StreamEnded()
	ss.streams[id] = st
	if ss.idleTimer != nil && len(ss.streams) == 1 {
		ss.idleTimer.Stop()
	}
	if f.Truncated {
		st.fail(errors.New("request header list too large"), http2.ErrCodeProtocol)
		return nil
	}
	r, err := requestOf(f, st)
	if err != nil {
		st.fail(err, http2.ErrCodeProtocol)
		return nil
	}
	ss.route(st, r, f)
	return nil
}

// route decides where a new stream goes: the listener's route table on the normalised path,
// one of the route's clusters, an endpoint of it; then opens the upstream stream.
func (ss *session) route(st *stream, r *http.Request, f *http2.MetaHeadersFrame) {
	h := ss.srv.handler
	state := h.State.Load()
	if r.Method == http.MethodConnect {
		st.stats = h.NoRoute
		st.replyLocal(http.StatusMethodNotAllowed, -1)
		return
	}
	if !route.NormalizePath(r) {
		st.stats = h.NoRoute
		st.replyLocal(http.StatusBadRequest, 13)
		return
	}
	st.path = r.URL.Path
	rt := state.Routes.Match(r)
	if rt == nil {
		st.stats = h.NoRoute
		st.replyLocal(http.StatusNotFound, 12)
		return
	}
	st.rt = rt
	t := rt.PickTarget()
	st.target, st.stats = t, t.Stats(state.Direction)
	if t.Cluster == nil || t.Cluster.Spec.Protocol != config.ClusterHTTP2 || answersLocally(rt) {
		// A reload changed the route since the connection started: the relay does not serve it.
		st.replyLocal(http.StatusServiceUnavailable, 14)
		return
	}
	ep := t.Cluster.Pick()
	if ep == nil {
		st.err = errors.New("no endpoint available")
		st.replyLocal(http.StatusServiceUnavailable, 14)
		return
	}
	ep.Start()
	st.ep, st.sent = ep, st.start
	st.startRetries(rt.Retry)
	if rt.Timeout > 0 {
		st.timer = time.AfterFunc(rt.Timeout, st.routeTimeout)
	}
	st.startTry()
	if rt.Actions != nil {
		rt.Actions.RewriteRequest(r) // the path and host forwarded (its header changes go to r.Header, unused)
		st.path = r.URL.Path         // logged as rewritten, as on the HTTP path
	}
	fields := upstreamRequestHeaders(f, r, t.Cluster.Scheme(), state.Direction == config.Inbound)
	st.reqHeaders = modifyFields(modifyFields(fields, routeRequestHeaders(rt)), t.RequestHeaders)
	ss.upstreamFor(t.Cluster, ep).attach(st)
}

// replyLocal answers a stream the proxy serves itself (no route, bad path, no endpoint).
func (st *stream) replyLocal(code, grpcStatus int) {
	if !st.isGRPC {
		grpcStatus = -1
	}
	st.grpcStatus = grpcStatus
	if code == http.StatusMethodNotAllowed {
		st.status = code
		body := "knit-proxy: CONNECT is not supported here: knit-proxy is not a forward proxy\n"
		w := st.ss.peer
		w.headers(st.id, false, []hpack.HeaderField{{Name: ":status", Value: "405"},
			{Name: "allow", Value: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"},
			{Name: "content-type", Value: "text/plain; charset=utf-8"}, {Name: "content-length", Value: strconv.Itoa(len(body))}})
		w.data(st.id, true, []byte(body))
		st.respStarted, st.respEnded = true, true
		if !st.reqEnded {
			w.reset(st.id, http2.ErrCodeNo)
		}
	} else {
		st.replyError(code)
	}
	if st.isGRPC {
		st.grpcStatus = grpcStatus
	}
	st.done = true
	st.ss.removeStream(st)
}

// clientTrailers ends a request with trailers.
func (ss *session) clientTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	if st.reqEnded {
		st.fail(errors.New("HEADERS after the request ended"), http2.ErrCodeStreamClosed)
		return nil
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		st.fail(errors.New("request trailers without END_STREAM or with pseudo-headers"), http2.ErrCodeProtocol)
		return nil
	}
	if st.contentLength >= 0 && st.bytesIn != st.contentLength {
		st.fail(errors.New("request body shorter than its content-length"), http2.ErrCodeProtocol)
		return nil
	}
	st.reqTrailers = append([]hpack.HeaderField(nil), f.RegularFields()...)
	if st.policy != nil {
		st.keptTrailers = st.reqTrailers
	}
	st.forwardRequestData(nil, true)
	return nil
}

// requestOf checks a request's header block as net/http's server does and builds the request
// the route table matches on.
func requestOf(f *http2.MetaHeadersFrame, st *stream) (*http.Request, error) {
	method, scheme, path := f.PseudoValue("method"), f.PseudoValue("scheme"), f.PseudoValue("path")
	authority := f.PseudoValue("authority")
	if f.PseudoValue("status") != "" || f.PseudoValue("protocol") != "" {
		return nil, errors.New("request with a response or extended CONNECT pseudo-header")
	}
	if method == "" || method != http.MethodConnect && (scheme == "" || path == "") {
		return nil, errors.New("request without :method, :scheme or :path")
	}
	hdr := make(http.Header, len(f.Fields))
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return nil, errors.New("connection-specific header " + hf.Name)
		case "te":
			if hf.Value != "trailers" {
				return nil, errors.New("te other than trailers")
			}
		case "content-length":
			n, err := strconv.ParseInt(hf.Value, 10, 64)
			if err != nil || n < 0 || st.contentLength >= 0 && st.contentLength != n {
				return nil, errors.New("invalid content-length")
			}
			st.contentLength = n
		case "host":
			if authority == "" {
				authority = hf.Value
			}
		case "content-type":
			st.isGRPC = strings.HasPrefix(hf.Value, "application/grpc")
		}
		k := http.CanonicalHeaderKey(hf.Name)
		hdr[k] = append(hdr[k], hf.Value)
	}
	if st.reqEnded && st.contentLength > 0 {
		return nil, errors.New("request ended before its content-length")
	}
	st.method, st.authority = method, authority
	r := &http.Request{Method: method, Host: authority, Header: hdr, Proto: "HTTP/2.0", ProtoMajor: 2,
		ContentLength: st.contentLength, URL: &url.URL{}}
	if method != http.MethodConnect {
		p, q, _ := strings.Cut(path, "?")
		if !strings.HasPrefix(p, "/") && p != "*" {
			return nil, errors.New("invalid :path")
		}
		r.URL.Path, r.URL.RawQuery = p, q
		if u, err := url.ParseRequestURI(p); err == nil {
			r.URL.Path, r.URL.RawPath = u.Path, u.RawPath
		}
	}
	st.path = r.URL.Path
	return r, nil
}

// upstreamRequestHeaders is the header block sent upstream: the routed (normalised) path, the
// upstream's scheme, and the client's fields minus what only the sidecar may set.
func upstreamRequestHeaders(f *http2.MetaHeadersFrame, r *http.Request, scheme string, inbound bool) []hpack.HeaderField {
	path := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	out := make([]hpack.HeaderField, 0, len(f.Fields)+1)
	out = append(out,
		hpack.HeaderField{Name: ":method", Value: r.Method},
		hpack.HeaderField{Name: ":scheme", Value: scheme},
		hpack.HeaderField{Name: ":authority", Value: r.Host},
		hpack.HeaderField{Name: ":path", Value: path})
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "host":
			continue
		case peerIdentityField:
			if inbound {
				continue // only the sidecar says who the peer is
			}
		}
		out = append(out, hf)
	}
	return out
}

var peerIdentityField = strings.ToLower(httpproxy.PeerIdentityHeader)

// logAccess writes a stream's access log line, when the access log is on.
func (s *Server) logAccess(st *stream) {
	obs := s.handler.Observers.Load()
	if obs == nil || obs.AccessLog == nil {
		return
	}
	st2 := s.handler.State.Load()
	e := accessEntry(st, string(st2.Direction))
	obs.AccessLog.Log(e)
}
