package h2relay

import (
	"net/http"
	"time"

	"github.com/knit-mesh/knit/proxy/accesslog"
	"github.com/knit-mesh/knit/proxy/httpproxy"
)

// The proxy's own answers say what the HTTP path says, in the same words.
var (
	grpcStatusFor = httpproxy.GRPCStatusFor
	grpcMessage   = httpproxy.GRPCMessage
)

func errorMessage(code int) string {
	switch code {
	case http.StatusNotFound:
		return "no route for this request"
	case http.StatusBadRequest:
		return "invalid request path"
	case http.StatusRequestTimeout:
		return "request body timeout"
	}
	return httpproxy.ErrorMessage(code)
}

// accessEntry is a relayed stream's access log entry, with the fields the HTTP path fills.
func accessEntry(st *stream, direction string) *accesslog.Entry {
	e := &accesslog.Entry{
		Start: st.start, Direction: direction, Method: st.method, Authority: st.authority,
		Path: st.path, Protocol: "HTTP/2.0", Status: st.status, GRPCStatus: st.grpcStatus, Attempts: max(st.attempts, 1),
		BytesIn: st.bytesIn, BytesOut: st.bytesOut,
	}
	e.Duration = time.Since(st.start)
	if st.rt != nil {
		e.Route = st.rt.Name
	}
	if st.target != nil && st.target.Cluster != nil {
		e.Upstream = st.target.Cluster.Name
	}
	if st.ep != nil {
		e.Endpoint = st.ep.Addr
	}
	if st.err != nil {
		e.Error = st.err.Error()
	}
	return e
}
