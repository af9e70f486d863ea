package httpproxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

type ioReadCloser = io.ReadCloser

func readFull(r io.Reader, b []byte) (int, error) { return io.ReadFull(r, b) }

func bodyOf(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// hopHeaders apply to one connection only and must not be forwarded (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	// Headers named in Connection are hop-by-hop too. Parsed without
	// allocating: the common values (keep-alive, close) name no header to drop.
	for _, f := range h["Connection"] {
		for f != "" {
			var tok string
			if i := strings.IndexByte(f, ','); i >= 0 {
				tok, f = f[:i], f[i+1:]
			} else {
				tok, f = f, ""
			}
			tok = textproto.TrimString(tok)
			if tok == "" || strings.EqualFold(tok, "keep-alive") || strings.EqualFold(tok, "close") || strings.EqualFold(tok, "upgrade") {
				continue
			}
			delete(h, textproto.CanonicalMIMEHeaderKey(tok))
		}
	}
	if len(h) <= len(hopHeaders) {
		// A small header: one pass over it costs less than a lookup per hop-by-hop name.
		for k, vv := range h {
			if isHopHeader(k) || k == "Te" && !onlyTrailers(vv) {
				delete(h, k)
			}
		}
		return
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	if te, ok := h["Te"]; ok && !onlyTrailers(te) {
		delete(h, "Te")
	}
}

// onlyTrailers: "TE: trailers" must reach gRPC servers; other TE values are hop-by-hop.
func onlyTrailers(te []string) bool {
	return len(te) == 1 && strings.EqualFold(te[0], "trailers")
}

func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// bufPool holds copy buffers so the body copy does not allocate per request.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// copyResponse writes status, headers, body and trailers. Bodies of unknown
// length (gRPC, server-sent events, chunked) are flushed after every read so
// streams are not held back.
func copyResponse(w http.ResponseWriter, resp *http.Response) (int64, int, error) {
	defer resp.Body.Close()
	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	removeHopHeaders(dst)
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	var n int64
	var err error
	if resp.Body != http.NoBody {
		n, err = copyBody(w, resp.Body, resp.ContentLength < 0)
	}
	for k, vv := range resp.Trailer {
		if announced > 0 {
			dst[k] = vv
		} else {
			dst[http.TrailerPrefix+k] = vv
		}
	}
	return n, grpcStatus(resp), err
}

func copyBody(w http.ResponseWriter, body io.Reader, flush bool) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	f, _ := w.(http.Flusher)
	var n int64
	for {
		nr, rerr := body.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, fmt.Errorf("%w: write response: %w", errClientGone, werr)
			}
			if flush && f != nil {
				f.Flush()
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, &upstreamBodyError{err: rerr}
		}
	}
}

// grpcStatus reads grpc-status from trailers, or from headers for a
// trailers-only response; -1 when the response is not gRPC.
func grpcStatus(resp *http.Response) int {
	v := firstValue(resp.Trailer, "Grpc-Status")
	if v == "" {
		v = firstValue(resp.Header, "Grpc-Status")
	}
	if v == "" {
		return -1
	}
	s, err := strconv.Atoi(v)
	if err != nil {
		return 2 // UNKNOWN
	}
	return s
}

// firstValue is h.Get(k) for a canonical k, without canonicalizing it again
// (Get does, per call).
func firstValue(h http.Header, k string) string {
	if vv := h[k]; len(vv) > 0 {
		return vv[0]
	}
	return ""
}
