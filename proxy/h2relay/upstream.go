package h2relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/knit-mesh/knit/proxy/balance"
	"github.com/knit-mesh/knit/proxy/upstream"
)

// upConn is an HTTP/2 connection to one endpoint, opened by a session for its streams (the
// session's streams to that endpoint share it while its concurrency limit allows).
type upConn struct {
	ss        *session
	cluster   *upstream.Cluster
	ep        *balance.Endpoint
	w         *peerWriter // nil while dialing
	raw       net.Conn
	fr        *http2.Framer
	br        *bufio.Reader
	streams   map[uint32]*stream // by upstream stream ID
	waiting   []*stream          // streams to open once the connection is up
	nextID    uint32
	maxConc   uint32
	recvUnack int32
	goingAway bool
	dead      bool
}

func (u *upConn) conn() net.Conn {
	if u.raw == nil {
		return nopConn{}
	}
	return u.raw
}

// upstreamFor returns a connection to ep with room for one more stream, dialing one if needed.
func (ss *session) upstreamFor(c *upstream.Cluster, ep *balance.Endpoint) *upConn {
	key := c.Name + "|" + ep.Addr
	for _, u := range ss.upstreams[key] {
		if !u.goingAway && !u.dead && uint32(len(u.streams)+len(u.waiting)) < u.maxConc {
			return u
		}
	}
	u := &upConn{ss: ss, cluster: c, ep: ep, streams: map[uint32]*stream{}, nextID: 1, maxConc: maxConcurrentStreams}
	ss.upstreams[key] = append(ss.upstreams[key], u)
	go u.dial(key)
	return u
}

// attach opens st on u now, or when the dial completes.
func (u *upConn) attach(st *stream) {
	st.up = u
	if u.w == nil {
		u.waiting = append(u.waiting, st)
		return
	}
	u.open(st)
}

// open starts the upstream stream: HEADERS, then whatever request data the windows admit.
func (u *upConn) open(st *stream) {
	if st.done || st.up != u { // ended, or moved to another attempt while u was dialing
		return
	}
	st.upID = u.nextID
	u.nextID += 2
	u.streams[st.upID] = st
	st.upWindow = u.w.initWindow
	end := st.reqEnded && len(st.reqPending) == 0 && st.reqTrailers == nil
	u.w.headers(st.upID, end, st.reqHeaders)
	if st.policy == nil { // kept for a retry's attempt otherwise
		st.reqHeaders = nil
	}
	if end {
		st.reqEndPending = false
	} else if st.reqEnded {
		st.reqEndPending = true
	}
	st.drainRequest()
}

// dial connects (mutual TLS for meshed endpoints, TLS when the cluster originates it), sends
// the preface and SETTINGS, and then reads the upstream's frames until the connection ends.
func (u *upConn) dial(key string) {
	ss := u.ss
	ctx, cancel := context.WithTimeout(context.Background(), u.cluster.Spec.ConnectTimeout.D())
	c, err := u.cluster.Dial(ctx, u.ep)
	cancel()
	if err == nil {
		if tc, ok := c.(*tls.Conn); ok && u.cluster.Scheme() == "https" && tc.ConnectionState().NegotiatedProtocol != "h2" {
			c.Close()
			err = errors.New("upstream did not negotiate h2")
		}
	}
	ss.mu.Lock()
	if err != nil || ss.closed {
		if c != nil {
			c.Close()
		}
		u.dead = true
		u.removeFromSession(key)
		for _, st := range u.waiting {
			if !st.done && st.up == u && !st.retryAfterFailure(err, upstream.DialResult(err)) {
				st.err = err
				st.endpointDone(upstream.DialResult(err))
				st.ep = nil
				code := 502
				if me := upstream.AsMeshError(err); me != nil && !me.Endpoint {
					code = 503
				}
				if me := upstream.AsMeshError(err); me != nil {
					st.reason = me.Reason
				}
				st.replyDialFailure(code)
			}
		}
		u.waiting = nil
		ss.flushAll()
		done := ss.takeFinished()
		ss.mu.Unlock()
		ss.record(done)
		return
	}
	u.raw = c
	u.br = bufio.NewReaderSize(c, readBufferSize)
	u.w = newPeerWriter(c, u.br, ss.limits.ResponseWriteTimeout.D())
	u.fr = u.w.fr
	u.fr.SetMaxReadFrameSize(maxReadFrameSize)
	u.fr.ReadMetaHeaders = hpack.NewDecoder(headerTableSize, nil)
	u.fr.MaxHeaderListSize = uint32(max(u.cluster.Spec.MaxResponseHeaderBytes, 4096))
	u.fr.SetReuseFrames()
	u.w.dirty = true
	u.w.bw.WriteString(clientPreface)
	u.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: maxReadFrameSize},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: u.fr.MaxHeaderListSize},
	)
	u.fr.WriteWindowUpdate(0, connWindow-initialPeerWindow)
	for _, st := range u.waiting {
		u.open(st)
	}
	u.waiting = nil
	ss.flushAll()
	ss.mu.Unlock()
	u.readLoop(key)
}

// replyDialFailure answers a stream whose upstream connection could not be opened.
func (st *stream) replyDialFailure(code int) {
	if st.reason == "" {
		st.reason = "connect_failure"
	}
	st.replyError(code)
	st.done = true
	st.stopTimers()
	st.ss.removeStream(st)
}

func (u *upConn) removeFromSession(key string) {
	list := u.ss.upstreams[key]
	for i, x := range list {
		if x == u {
			u.ss.upstreams[key] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(u.ss.upstreams[key]) == 0 {
		delete(u.ss.upstreams, key)
	}
}

// readLoop relays the upstream's frames to the client; the upstream's input running dry is
// when everything written meanwhile is flushed.
func (u *upConn) readLoop(key string) {
	ss := u.ss
	defer ss.closeOnPanic()
	var err error
	for {
		var f http2.Frame
		f, err = u.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				ss.mu.Lock()
				if st := u.streams[se.StreamID]; st != nil {
					st.fail(fmt.Errorf("%w: %v", errUpstreamReset, se), http2.ErrCodeInternal)
				}
				u.w.reset(se.StreamID, se.Code)
				ss.mu.Unlock()
				continue
			}
			break
		}
		var done []*stream
		if done, err = u.lockedFrame(f); err != nil {
			break
		}
		ss.record(done)
	}
	ss.mu.Lock()
	u.raw.Close()
	u.removeFromSession(key)
	ss.upstreamFailed(u, err)
	ss.flushAll()
	done := ss.takeFinished()
	ss.mu.Unlock()
	ss.record(done)
}

// lockedFrame handles f under the session lock and, once the upstream's buffered input is
// used up, flushes every side; it returns the streams that ended.
func (u *upConn) lockedFrame(f http2.Frame) ([]*stream, error) {
	ss := u.ss
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return nil, errClientGone
	}
	if err := u.frame(f); err != nil {
		return nil, err
	}
	if u.br.Buffered() > 0 {
		return nil, nil
	}
	ss.flushAll()
	return ss.takeFinished(), nil
}

// upstreamFailed ends the streams of an upstream connection that broke.
func (ss *session) upstreamFailed(u *upConn, err error) {
	if u.dead {
		return
	}
	u.dead = true
	u.raw.Close()
	for _, st := range u.streams {
		st.fail(fmt.Errorf("%w: %v", errUpstreamGone, err), http2.ErrCodeInternal)
	}
}

// frame handles one frame from the upstream; an error ends the upstream connection.
func (u *upConn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		st := u.streams[f.StreamID]
		if st == nil {
			return nil
		}
		if f.Truncated {
			st.fail(fmt.Errorf("%w: response headers too large", errUpstreamReset), http2.ErrCodeInternal)
			return nil
		}
		u.responseHeaders(st, f)
	case *http2.DataFrame:
		n := int32(f.Length)
		st := u.streams[f.StreamID]
		if st == nil || st.respEnded || !st.respStarted {
			u.recvUnack += n
			u.creditConn()
			if st != nil {
				st.fail(fmt.Errorf("%w: DATA outside a response", errUpstreamReset), http2.ErrCodeInternal)
			}
			return nil
		}
		data := f.Data()
		if pad := n - int32(len(data)); pad > 0 {
			u.creditUpstream(st, pad)
		}
		st.forwardResponseData(data, f.StreamEnded())
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			u.w.sendWindow += int32(f.Increment)
			for _, st := range u.streams {
				st.drainRequest()
			}
			return nil
		}
		if st := u.streams[f.StreamID]; st != nil {
			st.upWindow += int32(f.Increment)
			st.drainRequest()
		}
	case *http2.RSTStreamFrame:
		if st := u.streams[f.StreamID]; st != nil {
			if f.ErrCode == http2.ErrCodeNo && st.respEnded {
				// The answer is complete; the upstream needs no more of the request body.
				st.reqEnded, st.reqEndPending, st.reqPending, st.reqTrailers = true, false, nil, nil
				delete(u.streams, st.upID)
				st.upID = 0
				st.maybeDone()
				return nil
			}
			code := f.ErrCode
			if code == http2.ErrCodeRefusedStream && !st.respStarted {
				st.fail(errRefused, code)
				return nil
			}
			st.fail(fmt.Errorf("%w: %v", errUpstreamReset, code), code)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
			u.maxConc = v
		}
		delta, err := u.w.applySettings(f)
		if err != nil {
			return err
		}
		for _, st := range u.streams {
			st.upWindow += delta
			st.drainRequest()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			u.w.dirty = true
			u.fr.WritePing(true, f.Data)
		}
	case *http2.GoAwayFrame:
		u.goingAway = true
		for id, st := range u.streams {
			if id > f.LastStreamID {
				st.fail(errRefused, http2.ErrCodeRefusedStream)
			}
		}
		if len(u.streams) == 0 {
			return io.EOF
		}
	case *http2.PushPromiseFrame:
		return errors.New("upstream sent PUSH_PROMISE though push is disabled")
	}
	return nil
}

// responseHeaders forwards a response's HEADERS (or its trailers) to the client.
func (u *upConn) responseHeaders(st *stream, f *http2.MetaHeadersFrame) {
	w := u.ss.peer
	if !st.respStarted {
		code, err := strconv.Atoi(f.PseudoValue("status"))
		if err != nil || code < 100 || code > 999 {
			st.fail(fmt.Errorf("%w: response without a valid :status", errUpstreamReset), http2.ErrCodeProtocol)
			return
		}
		if code >= 200 && st.retryAfterStatus(code, f.StreamEnded() && st.reqEnded && !st.reqEndPending && len(st.reqPending) == 0) {
			return // nothing of this answer goes to the client
		}
		fields := responseFields(f)
		if code < 200 { // informational: forwarded, the response is still to come
			st.clientSawResponse = true
			st.stopRetrying()
			w.headers(st.id, false, fields)
			return
		}
		fields = modifyFields(modifyFields(fields, routeResponseHeaders(st.rt)), st.target.ResponseHeaders)
		st.status = code
		st.respStarted = true
		st.stopRetrying()
		if f.StreamEnded() {
			st.respEnded = true
			st.grpcStatus = grpcStatusOf(f, st.isGRPC)
		}
		result := balance.Success
		if code >= 500 {
			result = balance.Status5xx
		}
		st.endpointDone(result)
		w.headers(st.id, f.StreamEnded(), fields)
		st.maybeDone()
		return
	}
	// trailers
	if !f.StreamEnded() || st.respEnded {
		st.fail(fmt.Errorf("%w: HEADERS in the middle of a response body", errUpstreamReset), http2.ErrCodeProtocol)
		return
	}
	st.grpcStatus = grpcStatusOf(f, st.isGRPC)
	st.respTrailers = responseFields(f)
	st.respEnded, st.respEndPending = true, true
	st.drainResponse()
}

// responseFields are the upstream's fields minus connection-specific ones.
func responseFields(f *http2.MetaHeadersFrame) []hpack.HeaderField {
	out := make([]hpack.HeaderField, 0, len(f.Fields))
	for _, hf := range f.Fields {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			continue
		}
		out = append(out, hf)
	}
	return out
}

// grpcStatusOf reads grpc-status from a trailers (or trailers-only) block; -1 when not gRPC.
func grpcStatusOf(f *http2.MetaHeadersFrame, isGRPC bool) int {
	for _, hf := range f.RegularFields() {
		if hf.Name == "grpc-status" {
			if n, err := strconv.Atoi(hf.Value); err == nil {
				return n
			}
		}
	}
	if isGRPC {
		return 2 // UNKNOWN: a gRPC response must carry a status
	}
	return -1
}

// creditUpstream gives the upstream back window for n bytes written to the client.
func (u *upConn) creditUpstream(st *stream, n int32) {
	if u.dead || u.w == nil {
		return
	}
	u.recvUnack += n
	u.creditConn()
	if st.respEnded || st.upID == 0 {
		return
	}
	st.upUnack += n
	if st.upUnack >= streamWindow/4 {
		u.w.windowUpdate(st.upID, st.upUnack)
		st.upUnack = 0
	}
}

func (u *upConn) creditConn() {
	if u.recvUnack >= connWindow/4 {
		u.w.windowUpdate(0, u.recvUnack)
		u.recvUnack = 0
	}
}

// closeIfDone closes an upstream connection that is going away and has no stream left.
func (u *upConn) closeIfDone() {
	if u.goingAway && len(u.streams) == 0 && u.raw != nil {
		u.raw.Close()
	}
}

// nopConn stands for a connection still being dialed.
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }
