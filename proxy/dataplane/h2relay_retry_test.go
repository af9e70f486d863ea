package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// refusingH2Upstream is an HTTP/2 server that processes no stream: each request's HEADERS is
// answered with RST_STREAM REFUSED_STREAM, or (goAway) with GOAWAY whose last stream is below it.
func refusingH2Upstream(t *testing.T, goAway bool, hits *atomic.Int64) string {
	t.Helper()
	return tcpServer(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(time.Minute))
		br := bufio.NewReader(c)
		if _, err := br.Discard(len(http2.ClientPreface)); err != nil {
			return
		}
		fr := http2.NewFramer(c, br)
		if fr.WriteSettings() != nil {
			return
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() && fr.WriteSettingsAck() != nil {
					return
				}
			case *http2.HeadersFrame:
				hits.Add(1)
				if goAway {
					fr.WriteGoAway(max(f.StreamID, 2)-2, http2.ErrCodeNo, nil)
					io.Copy(io.Discard, br) // until the proxy closes the connection
					return
				}
				if fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream) != nil {
					return
				}
			}
		}
	})
}

// rawExchange sends one request on a raw client connection and reads its answer: the status,
// the body, and an error for a reset stream or connection.
func rawExchange(fr *http2.Framer, id uint32, method, path string) (int, string, error) {
	block := encodeNeverIndexed(":method", method, ":scheme", "http", ":authority", "relay.example", ":path", path)
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true, EndStream: true}); err != nil {
		return 0, "", err
	}
	status := 0
	var body bytes.Buffer
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return status, body.String(), err
		}
		if f.Header().StreamID != id && f.Header().StreamID != 0 {
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" {
				status, _ = strconv.Atoi(s)
			}
			if f.StreamEnded() {
				return status, body.String(), nil
			}
		case *http2.DataFrame:
			body.Write(f.Data())
			if f.StreamEnded() {
				return status, body.String(), nil
			}
		case *http2.RSTStreamFrame:
			return status, body.String(), fmt.Errorf("RST_STREAM %v", f.ErrCode)
		case *http2.GoAwayFrame:
			return status, body.String(), fmt.Errorf("GOAWAY %v", f.ErrCode)
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		}
	}
}

// relayRetryProxy routes everything to cluster c (round robin over endpoints) with retry.
func relayRetryProxy(t *testing.T, retry string, endpoints ...string) *Proxy {
	eps := make([]string, len(endpoints))
	for i, e := range endpoints {
		eps[i] = fmt.Sprintf("{address: %q}", e)
	}
	return startProxy(t, fmt.Sprintf(`
listeners:
- {name: in, address: "127.0.0.1:0", protocol: http, routeConfig: main}
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [{name: r, timeout: 30s, clusters: [{name: c}], retry: %s}]}]
clusters:
- name: c
  protocol: http2
  lbPolicy: round_robin
  retryBudget: {ratio: 1, minPerSecond: 1000}
  endpoints: [%s]
`, retry, strings.Join(eps, ", ")))
}

// A stream the upstream provably did not process (REFUSED_STREAM, or above a GOAWAY's last
// stream) goes to another endpoint; the client, a raw one that would not retry by itself, sees
// the other endpoint's answer and never the refusal. The retry is counted.
func TestRelayRetriesAStreamTheUpstreamDidNotProcess(t *testing.T) {
	for name, goAway := range map[string]bool{"REFUSED_STREAM": false, "GOAWAY": true} {
		t.Run(name, func(t *testing.T) {
			relayed := relayOn(t)
			var refused atomic.Int64
			good := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") }))
			p := relayRetryProxy(t, "{attempts: 1, retryOn: [5xx], backoff: {base: 1ms, max: 1ms}}",
				refusingH2Upstream(t, goAway, &refused), good)
			fr := rawH2CClient(t, addr(t, p, "in"))
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			for i := range 6 {
				code, body, err := rawExchange(fr, uint32(1+2*i), "GET", "/x")
				if err != nil || code != 200 || body != "good" {
					t.Fatalf("request %d: %d %q %v; want the answer of the endpoint that took it", i, code, body, err)
				}
			}
			if refused.Load() == 0 {
				t.Fatal("no request reached the refusing endpoint: nothing was retried")
			}
			waitFor(t, "every refusal counted as a retry", func() bool {
				return metricValue(t, p, "knit_retries_total", `route="r"`) == strconv.FormatInt(refused.Load(), 10)
			})
			relayed()
		})
	}
}

// An attempt that fails before its response began (a 503, a reset, a connect failure, a
// per-try timeout) is retried on the other endpoint when the policy retries it; a request body
// is sent again whole.
func TestRelayRetriesAFailureBeforeTheResponseBegan(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "good:")
		w.Write(b)
	}
	cases := []struct {
		name, retry string
		bad         func(t *testing.T, hits *atomic.Int64) string
	}{
		{"503", "{attempts: 1, retryOn: [5xx], methods: [POST]}", func(t *testing.T, hits *atomic.Int64) string {
			return h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				io.ReadAll(r.Body)
				w.WriteHeader(http.StatusServiceUnavailable)
			}))
		}},
		{"reset before headers", "{attempts: 1, retryOn: [reset], methods: [POST]}", func(t *testing.T, hits *atomic.Int64) string {
			return h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				panic(http.ErrAbortHandler)
			}))
		}},
		// 1 s: the good endpoint's attempt must fit in it too, on a loaded machine (300 ms did not).
		{"per-try timeout", "{attempts: 1, retryOn: [gateway-error], perTryTimeout: 1s, methods: [POST]}", func(t *testing.T, hits *atomic.Int64) string {
			return h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				<-r.Context().Done()
			}))
		}},
		{"connect failure", "{attempts: 1, retryOn: [connect-failure], methods: [POST]}", func(t *testing.T, hits *atomic.Int64) string {
			return refusingAddress(t)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			relayed := relayOn(t)
			var hits atomic.Int64
			p := relayRetryProxy(t, c.retry, c.bad(t, &hits), h2cUpstream(t, http.HandlerFunc(echo)))
			cl := h2cClient()
			cl.Timeout = 30 * time.Second
			body := strings.Repeat("b", 3000)
			for i := range 6 {
				resp, err := cl.Post("http://"+addr(t, p, "in")+"/x", "text/plain", strings.NewReader(body))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(got) != "good:"+body {
					t.Fatalf("request %d: %d %.40q; want the good endpoint's echo of the whole body", i, resp.StatusCode, got)
				}
			}
			if v, _ := strconv.Atoi(metricValue(t, p, "knit_retries_total", `route="r"`)); v == 0 {
				t.Fatal("no retry counted")
			}
			relayed()
		})
	}
}

// Nothing is retried that may have been half-answered or whose body was not kept: once the
// response began (here headers and part of the body, then a reset), or when the request body
// is larger than what is kept for a replay, or when the attempts are used up.
func TestRelayDoesNotRetryWhatItMustNot(t *testing.T) {
	t.Run("response began", func(t *testing.T) {
		relayed := relayOn(t)
		var hits atomic.Int64
		up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("partial "))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}))
		p := relayRetryProxy(t, "{attempts: 3, retryOn: [reset, 5xx, connect-failure], backoff: {base: 1ms, max: 1ms}}", up)
		resp, err := h2cClient().Get("http://" + addr(t, p, "in") + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || string(body) != "partial " {
			t.Fatalf("want the body cut after %q, got %q and %v", "partial ", body, err)
		}
		if hits.Load() != 1 || metricValue(t, p, "knit_retries_total", `route="r"`) != "0" {
			t.Fatalf("%d attempts, retries %s; want one attempt", hits.Load(), metricValue(t, p, "knit_retries_total", `route="r"`))
		}
		relayed()
	})
	t.Run("body not kept", func(t *testing.T) {
		relayed := relayOn(t)
		var hits atomic.Int64
		up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			io.ReadAll(r.Body)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		p := relayRetryProxy(t, "{attempts: 3, retryOn: [5xx], methods: [POST], backoff: {base: 1ms, max: 1ms}}", up)
		cl := h2cClient()
		for _, size := range []int{100 << 10, 70 << 10} {
			// with a content-length above the limit, and without one (a body that outgrows it)
			var r io.Reader = bytes.NewReader(make([]byte, size))
			if size == 70<<10 {
				r = io.MultiReader(r) // hides the length: no content-length
			}
			resp, err := cl.Post("http://"+addr(t, p, "in")+"/x", "application/octet-stream", r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 503 {
				t.Fatalf("%d-byte body: %d, want the upstream's 503", size, resp.StatusCode)
			}
		}
		if hits.Load() != 2 || metricValue(t, p, "knit_retries_total", `route="r"`) != "0" {
			t.Fatalf("%d attempts for 2 requests, retries %s", hits.Load(), metricValue(t, p, "knit_retries_total", `route="r"`))
		}
		relayed()
	})
	t.Run("attempts used up", func(t *testing.T) {
		relayed := relayOn(t)
		var hits atomic.Int64
		up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.WriteHeader(http.StatusBadGateway)
		}))
		p := relayRetryProxy(t, "{attempts: 2, retryOn: [5xx], backoff: {base: 1ms, max: 1ms}}", up)
		resp, err := h2cClient().Get("http://" + addr(t, p, "in") + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 || hits.Load() != 3 {
			t.Fatalf("%d after %d attempts; want the last attempt's 502 after 3", resp.StatusCode, hits.Load())
		}
		waitFor(t, "two retries counted", func() bool {
			return metricValue(t, p, "knit_retries_total", `route="r"`) == "2"
		})
		relayed()
	})
}
