package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/knit-mesh/knit/proxy/route"
)

// errPerTryTimeout is an attempt that outlived the route's per-try timeout
// while the request itself had time left: a 504 from that endpoint.
var errPerTryTimeout = errors.New("per-try timeout")

// try is one attempt's bounds: a connection deadline on the fast path, a
// context on the http.Transport path. Both cover the whole response, body
// included, as Gateway API's backendRequest timeout does.
type try struct {
	req      *http.Request
	deadline time.Time // passed to the fast path
	request  time.Time // the request's own deadline (fast path)
	perTry   bool
	parent   context.Context // the request's context
	ctx      context.Context // the attempt's, under parent
	cancel   context.CancelFunc
}

// startTry bounds one attempt by the policy's per-try timeout when it has
// one that ends before the request's own deadline.
func startTry(out *http.Request, p *route.Retry, sent, deadline time.Time, fast bool) try {
	t := try{req: out, deadline: deadline, request: deadline}
	if p == nil || p.PerTry <= 0 {
		return t
	}
	end := sent.Add(p.PerTry)
	if d, ok := out.Context().Deadline(); (ok && !d.After(end)) || (!deadline.IsZero() && !deadline.After(end)) {
		return t
	}
	t.perTry = true
	if fast {
		t.deadline = end
		return t
	}
	t.parent = out.Context()
	t.ctx, t.cancel = context.WithDeadline(t.parent, end)
	t.req = out.WithContext(t.ctx)
	return t
}

// end reports whether the attempt failed because its per-try time ran out
// (the request's own context and deadline still alive); otherwise the
// attempt's context lives until the response body is closed.
func (t try) end(resp *http.Response, err error) (*http.Response, error, bool) {
	if !t.perTry {
		return resp, err, false
	}
	var expired bool
	if t.cancel != nil {
		expired = err != nil && t.ctx.Err() == context.DeadlineExceeded && t.parent.Err() == nil
		if resp != nil && err == nil {
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: t.cancel}
		} else {
			t.cancel()
		}
	} else {
		now := time.Now()
		expired = err != nil && !now.Before(t.deadline) && (t.request.IsZero() || now.Before(t.request))
	}
	if expired {
		return nil, fmt.Errorf("%w: %w", errPerTryTimeout, err), true
	}
	return resp, err, false
}

// cancelOnClose releases an attempt's context once its response body is done.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
