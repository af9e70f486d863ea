package h2relay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/knit-mesh/knit/proxy/config"
)

// What the relay advertises to clients and upstreams: streams may send 1 MiB before a
// WINDOW_UPDATE, a connection 4 MiB, as net/http's server did for the proxy; frames are read up
// to the protocol's default size of 16 KiB (what gRPC sends anyway). The windows bound what one
// stream buffers in the relay while its other side is slow.
const (
	maxConcurrentStreams = 1000
	streamWindow         = 1 << 20
	connWindow           = 4 << 20
	maxReadFrameSize     = 16 << 10
	headerTableSize      = 4096
	initialPeerWindow    = 65535 // RFC 9113 §6.9.2, until the peer's SETTINGS say otherwise
	defaultPeerFrameSize = 16384
	writeBufferSize      = 32 << 10
	readBufferSize       = 16 << 10
)

const clientPreface = http2.ClientPreface

// After a connection error, the client's remaining input is read for at most this long and
// this much before the socket is closed.
const (
	lingerAfterGoAway = 500 * time.Millisecond
	lingerMaxBytes    = 4 << 20
)

// session is one relayed client connection with the upstream connections it opened. One mutex
// guards all of it: the stream tables, the flow-control windows and every write, so a frame
// read on one side is forwarded to the other under one lock and no goroutine runs per stream.
type session struct {
	srv    *Server
	limits config.ListenerLimits
	conn   net.Conn
	peer   *peerWriter // the client side: framer, buffered writer, hpack encoder
	fr     *http2.Framer
	br     *bufio.Reader

	mu         sync.Mutex
	streams    map[uint32]*stream // by the client's stream ID
	lastID     uint32             // highest stream ID the client opened
	upstreams  map[string][]*upConn
	recvWindow int32 // what the client may still send on the connection
	recvUnack  int32 // client DATA bytes forwarded but not yet credited on the connection
	goingAway  bool  // GOAWAY sent or received: no new streams
	lingering  bool  // shut for writing: the client's last frames are read and dropped until it closes
	closed     bool
	finished   []*stream // ended streams whose metrics and log line are still to be written
	idleTimer  *time.Timer
	bodyTicker *time.Ticker
}

// peerWriter is one side's writing half: frames go into a buffered writer, flushed once per
// burst of work by whichever goroutine holds the session lock when its input runs dry.
type peerWriter struct {
	conn       net.Conn
	bw         *bufio.Writer
	fr         *http2.Framer
	enc        *hpack.Encoder
	encBuf     bufferWriter
	dirty      bool
	maxFrame   uint32 // the peer's SETTINGS_MAX_FRAME_SIZE
	initWindow int32  // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	sendWindow int32  // connection-level window the peer granted us
	writeLimit time.Duration
	err        error // the first write failure; the side is dead after it
}

type bufferWriter struct{ b []byte }

func (w *bufferWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

func newPeerWriter(c net.Conn, r io.Reader, writeLimit time.Duration) *peerWriter {
	pw := &peerWriter{conn: c, bw: bufio.NewWriterSize(c, writeBufferSize), maxFrame: defaultPeerFrameSize,
		initWindow: initialPeerWindow, sendWindow: initialPeerWindow, writeLimit: writeLimit}
	pw.fr = http2.NewFramer(pw.bw, r)
	pw.enc = hpack.NewEncoder(&pw.encBuf)
	return pw
}

// flush writes what was buffered; a peer that reads nothing for writeLimit fails the write.
func (pw *peerWriter) flush() error {
	if !pw.dirty || pw.err != nil {
		return pw.err
	}
	pw.dirty = false
	if pw.writeLimit > 0 {
		pw.conn.SetWriteDeadline(time.Now().Add(pw.writeLimit))
	}
	if err := pw.bw.Flush(); err != nil {
		pw.err = err
	}
	return pw.err
}

// headers writes a header block as HEADERS plus CONTINUATION frames within the peer's frame size.
func (pw *peerWriter) headers(id uint32, endStream bool, fields []hpack.HeaderField) {
	pw.encBuf.b = pw.encBuf.b[:0]
	for _, f := range fields {
		pw.enc.WriteField(f)
	}
	block := pw.encBuf.b
	first := block
	if uint32(len(first)) > pw.maxFrame {
		first = block[:pw.maxFrame]
	}
	pw.dirty = true
	pw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream,
		EndHeaders: len(first) == len(block)})
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(uint32(len(rest)), pw.maxFrame)
		pw.fr.WriteContinuation(id, int(n) == len(rest), rest[:n])
		rest = rest[n:]
	}
}

// data writes p as DATA frames within the peer's frame size; the caller checked the windows.
func (pw *peerWriter) data(id uint32, endStream bool, p []byte) {
	pw.dirty = true
	for {
		n := min(uint32(len(p)), pw.maxFrame)
		pw.fr.WriteData(id, endStream && int(n) == len(p), p[:n])
		p = p[n:]
		if len(p) == 0 {
			return
		}
	}
}

func (pw *peerWriter) reset(id uint32, code http2.ErrCode) {
	pw.dirty = true
	pw.fr.WriteRSTStream(id, code)
}

func (pw *peerWriter) windowUpdate(id uint32, n int32) {
	if n > 0 {
		pw.dirty = true
		pw.fr.WriteWindowUpdate(id, uint32(n))
	}
}

// applySettings takes a peer's SETTINGS; delta is how much every stream's send window moves.
func (pw *peerWriter) applySettings(f *http2.SettingsFrame) (delta int32, err error) {
	err = f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxFrameSize:
			pw.maxFrame = s.Val
		case http2.SettingInitialWindowSize:
			delta += int32(s.Val) - pw.initWindow
			pw.initWindow = int32(s.Val)
		case http2.SettingHeaderTableSize:
			pw.enc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	pw.dirty = true
	pw.fr.WriteSettingsAck()
	return delta, nil
}

// ServeConn relays one client connection whose first bytes (the preface included) are still
// to be read from br, a reader of c. It returns when the connection is closed.
func (s *Server) ServeConn(c net.Conn, br *bufio.Reader) {
	lim := *s.limits.Load()
	ss := &session{srv: s, limits: lim, conn: c, br: br, streams: map[uint32]*stream{}, recvWindow: connWindow,
		upstreams: map[string][]*upConn{}}
	ss.peer = newPeerWriter(c, br, lim.ResponseWriteTimeout.D())
	ss.fr = ss.peer.fr
	ss.fr.SetMaxReadFrameSize(maxReadFrameSize)
	ss.fr.ReadMetaHeaders = hpack.NewDecoder(headerTableSize, nil)
	ss.fr.MaxHeaderListSize = uint32(max(lim.MaxHeaderBytes, 4096))
	ss.fr.SetReuseFrames()
	defer ss.close()
	defer ss.recoverPanic()
	if !s.track(ss) {
		return
	}
	defer s.untrack(ss)
	served.Add(1)

	if d := lim.ReadHeaderTimeout.D(); d > 0 {
		c.SetReadDeadline(time.Now().Add(d))
	}
	preface := make([]byte, len(clientPreface))
	if _, err := io.ReadFull(br, preface); err != nil || string(preface) != clientPreface {
		return
	}
	ss.mu.Lock()
	ss.peer.dirty = true
	ss.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: maxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: maxReadFrameSize},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: ss.fr.MaxHeaderListSize},
	)
	ss.fr.WriteWindowUpdate(0, connWindow-initialPeerWindow)
	err := ss.peer.flush()
	ss.mu.Unlock()
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	ss.armIdle()
	if d := lim.RequestBodyIdleTimeout.D(); d > 0 {
		ss.bodyTicker = time.NewTicker(max(d/8, 10*time.Millisecond))
		go ss.watchBodies(ss.bodyTicker, d)
	}

	for {
		f, err := ss.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				ss.mu.Lock()
				ss.streamError(se)
				ss.mu.Unlock()
				ss.afterWork()
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				ss.connectionError(http2.ErrCode(ce))
			} else if errors.Is(err, http2.ErrFrameTooLarge) {
				ss.connectionError(http2.ErrCodeFrameSize)
			}
			return
		}
		if cerr := ss.lockedClientFrame(f); cerr != nil {
			var ce http2.ConnectionError
			if errors.As(cerr, &ce) {
				ss.connectionError(http2.ErrCode(ce))
			}
			return
		}
		ss.afterWork()
		if ss.isClosed() {
			return
		}
	}
}

func (ss *session) lockedClientFrame(f http2.Frame) error {
	ss.mu.Lock()
	defer ss.mu.Unlock() // also when a bug panics: the session is closed, never left locked
	if ss.lingering {
		return nil // shut for writing (closeIfDone): nothing can be answered any more
	}
	return ss.clientFrame(f)
}

// recoverPanic logs a bug in the relay with its stack and lets the connection close.
func (ss *session) recoverPanic() {
	if v := recover(); v != nil {
		ss.srv.log.Error(fmt.Errorf("panic: %v", v), "recovered a panic in the HTTP/2 relay; closing the client connection",
			"stack", string(debug.Stack()))
	}
}

// closeOnPanic is recoverPanic for an upstream's reader, whose session would otherwise stay open.
func (ss *session) closeOnPanic() {
	if v := recover(); v != nil {
		ss.srv.log.Error(fmt.Errorf("panic: %v", v), "recovered a panic in the HTTP/2 relay; closing the client connection",
			"stack", string(debug.Stack()))
		ss.close()
	}
}

// afterWork flushes every side once the client's buffered input is used up, then writes the
// metrics and log lines of streams that ended. Called by the client reader only.
func (ss *session) afterWork() {
	if ss.br.Buffered() > 0 {
		return
	}
	ss.mu.Lock()
	ss.flushAll()
	done := ss.takeFinished()
	ss.mu.Unlock()
	ss.record(done)
}

// flushAll writes every side's buffered frames; a client that cannot be written to ends the
// session, an upstream that cannot ends its streams.
func (ss *session) flushAll() {
	for _, ups := range ss.upstreams {
		for _, u := range ups {
			if u.w != nil && u.w.dirty && u.w.flush() != nil {
				ss.upstreamFailed(u, u.w.err)
			}
		}
	}
	if ss.peer.flush() != nil {
		ss.closeLocked()
	}
}

func (ss *session) takeFinished() []*stream {
	done := ss.finished
	ss.finished = nil
	return done
}

func (ss *session) isClosed() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.closed
}

// connectionError tells the client why the connection ends (GOAWAY) and closes it. What the
// client still sends is read (briefly, boundedly) first: closing a socket with unread input
// resets it, and the reset can overtake the GOAWAY.
func (ss *session) connectionError(code http2.ErrCode) {
	ss.mu.Lock()
	linger := false
	if !ss.closed {
		ss.peer.dirty = true
		ss.fr.WriteGoAway(ss.lastID, code, nil)
		linger = ss.peer.flush() == nil
	}
	ss.mu.Unlock()
	if cw, ok := ss.conn.(interface{ CloseWrite() error }); linger && ok && cw.CloseWrite() == nil {
		ss.conn.SetReadDeadline(time.Now().Add(lingerAfterGoAway))
		io.CopyN(io.Discard, ss.br, lingerMaxBytes)
	}
	ss.mu.Lock()
	ss.closeLocked()
	done := ss.takeFinished()
	ss.mu.Unlock()
	ss.record(done)
}

// goAway stops new streams (drain); the connection closes when its streams have ended.
func (ss *session) goAway() {
	ss.mu.Lock()
	if !ss.goingAway && !ss.closed {
		ss.goingAway = true
		ss.peer.dirty = true
		ss.fr.WriteGoAway(ss.lastID, http2.ErrCodeNo, nil)
		ss.peer.flush()
	}
	ss.closeIfDone()
	ss.mu.Unlock()
}

// closeIfDone ends a connection that is going away once no stream is left: it is shut for
// writing, and what the client still sends is read and dropped until it closes its side too
// or lingerAfterGoAway passes (serve's read loop then closes it). Closing at once with unread
// input (a PING after the client's GOAWAY) would reset the connection, and the reset can
// overtake what was sent before it.
func (ss *session) closeIfDone() {
	if !ss.goingAway || len(ss.streams) > 0 || ss.lingering || ss.closed {
		return
	}
	cw, ok := ss.conn.(interface{ CloseWrite() error })
	if ss.peer.flush() != nil || !ok || cw.CloseWrite() != nil {
		ss.closeLocked()
		return
	}
	ss.lingering = true
	ss.conn.SetReadDeadline(time.Now().Add(lingerAfterGoAway))
}

func (ss *session) close() {
	ss.mu.Lock()
	ss.closeLocked()
	done := ss.takeFinished()
	ss.mu.Unlock()
	ss.record(done)
}

// closeLocked closes the client connection and every upstream; open streams end as reset.
func (ss *session) closeLocked() {
	if ss.closed {
		return
	}
	ss.closed = true
	for _, st := range ss.streams {
		st.fail(errClientGone, 0)
	}
	for _, ups := range ss.upstreams {
		for _, u := range ups {
			u.conn().Close()
		}
	}
	if ss.idleTimer != nil {
		ss.idleTimer.Stop()
	}
	if ss.bodyTicker != nil {
		ss.bodyTicker.Stop()
	}
	ss.conn.Close()
}

// armIdle closes the connection after the listener's idle timeout without a stream.
func (ss *session) armIdle() {
	d := ss.limits.IdleTimeout.D()
	if d <= 0 {
		return
	}
	ss.idleTimer = time.AfterFunc(d, func() {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if len(ss.streams) == 0 && !ss.closed {
			ss.goingAway = true
			ss.peer.dirty = true
			ss.fr.WriteGoAway(ss.lastID, http2.ErrCodeNo, nil)
			ss.peer.flush()
			ss.closeLocked()
		}
	})
}

// watchBodies ends streams whose client stopped sending their request body for longer than
// idle, as the HTTP path's request body guard does (408, or a reset once the answer began).
func (ss *session) watchBodies(t *time.Ticker, idle time.Duration) {
	for range t.C {
		now := time.Now()
		ss.mu.Lock()
		if ss.closed {
			ss.mu.Unlock()
			return
		}
		for _, st := range ss.streams {
			if !st.reqEnded && now.Sub(st.lastClientData) > idle {
				st.fail(errRequestBodyIdle, http2.ErrCodeCancel)
			}
		}
		ss.flushAll()
		done := ss.takeFinished()
		ss.mu.Unlock()
		ss.record(done)
	}
}

// clientFrame handles one frame from the client. A returned ConnectionError ends the session.
func (ss *session) clientFrame(f http2.Frame) error {
	if ss.closed {
		return io.EOF
	}
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return ss.clientHeaders(f)
	case *http2.DataFrame:
		return ss.clientData(f)
	case *http2.WindowUpdateFrame:
		return ss.clientWindowUpdate(f)
	case *http2.RSTStreamFrame:
		if f.StreamID > ss.lastID || f.StreamID%2 == 0 {
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		if st := ss.streams[f.StreamID]; st != nil {
			st.fail(errClientReset, f.ErrCode)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		delta, err := ss.peer.applySettings(f)
		if err != nil {
			return err
		}
		for _, st := range ss.streams {
			if int64(st.clientWindow)+int64(delta) > 1<<31-1 {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			st.clientWindow += delta
			st.drainResponse()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			ss.peer.dirty = true
			ss.fr.WritePing(true, f.Data)
		}
	case *http2.GoAwayFrame:
		ss.goingAway = true
		ss.closeIfDone()
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			ss.streamError(http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol})
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case *http2.ContinuationFrame: // only after HEADERS, which the framer joins
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

// streamError resets one stream for a frame the framer refused.
func (ss *session) streamError(se http2.StreamError) {
	if st := ss.streams[se.StreamID]; st != nil {
		st.fail(fmt.Errorf("client stream error: %w", se), se.Code)
		return
	}
	if se.StreamID > ss.lastID {
		ss.lastID = se.StreamID
	}
	ss.peer.reset(se.StreamID, se.Code)
}

func (ss *session) clientWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		if int64(ss.peer.sendWindow)+int64(f.Increment) > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		ss.peer.sendWindow += int32(f.Increment)
		for _, st := range ss.streams {
			st.drainResponse()
		}
		return nil
	}
	if f.StreamID > ss.lastID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	st := ss.streams[f.StreamID]
	if st == nil {
		return nil
	}
	if int64(st.clientWindow)+int64(f.Increment) > 1<<31-1 {
		st.fail(errors.New("client window overflow"), http2.ErrCodeFlowControl)
		return nil
	}
	st.clientWindow += int32(f.Increment)
	st.drainResponse()
	return nil
}

func (ss *session) clientData(f *http2.DataFrame) error {
	id, n := f.StreamID, int32(f.Length)
	if id > ss.lastID || id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol) // DATA on an idle stream
	}
	if n > ss.recvWindow {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	ss.recvWindow -= n
	st := ss.streams[id]
	if st == nil || st.reqEnded {
		// A closed stream: its flow-control bytes still count for the connection.
		ss.creditClient(nil, n)
		ss.peer.reset(id, http2.ErrCodeStreamClosed)
		return nil
	}
	if n > st.recvWindow {
		st.fail(errors.New("client sent beyond the stream window"), http2.ErrCodeFlowControl)
		return nil
	}
	st.recvWindow -= n
	st.lastClientData = time.Now()
	data := f.Data()
	st.bytesIn += int64(len(data))
	if st.contentLength >= 0 && st.bytesIn > st.contentLength {
		st.fail(errors.New("request body longer than its content-length"), http2.ErrCodeProtocol)
		return nil
	}
	if pad := n - int32(len(data)); pad > 0 {
		ss.creditClient(st, pad) // padding is never forwarded
	}
	end := f.StreamEnded()
	if end && st.contentLength >= 0 && st.bytesIn != st.contentLength {
		st.fail(errors.New("request body shorter than its content-length"), http2.ErrCodeProtocol)
		return nil
	}
	if st.policy != nil {
		st.keep(data)
	}
	st.forwardRequestData(data, end)
	return nil
}

// creditClient gives the client back n bytes of window once they left the relay, in steps
// large enough that a busy stream does not cost a WINDOW_UPDATE per frame.
func (ss *session) creditClient(st *stream, n int32) {
	ss.recvUnack += n
	if ss.recvUnack >= connWindow/4 {
		ss.peer.windowUpdate(0, ss.recvUnack)
		ss.recvWindow += ss.recvUnack
		ss.recvUnack = 0
	}
	if st == nil || st.reqEnded {
		return
	}
	st.recvUnack += n
	if st.recvUnack >= streamWindow/4 {
		st.recvWindow += st.recvUnack
		ss.peer.windowUpdate(st.id, st.recvUnack)
		st.recvUnack = 0
	}
}

// removeStream forgets an ended stream and queues its metrics and log line.
func (ss *session) removeStream(st *stream) {
	delete(ss.streams, st.id)
	if st.up != nil {
		delete(st.up.streams, st.upID)
		st.up.closeIfDone()
	}
	ss.finished = append(ss.finished, st)
	if len(ss.streams) == 0 && ss.idleTimer != nil {
		ss.idleTimer.Reset(ss.limits.IdleTimeout.D())
	}
	ss.closeIfDone()
}
