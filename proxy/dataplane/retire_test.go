package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// sidecarLikeConfig has an inbound and an outbound listener, both routing to up; maxHeaderBytes
// changes the listeners' limits, which starts a new server generation on reload.
func sidecarLikeConfig(up string, maxHeaderBytes int) string {
	return fmt.Sprintf(`
listeners:
- {name: inbound, address: "127.0.0.1:0", direction: inbound, routeConfig: main, limits: {maxHeaderBytes: %[2]d}}
- {name: outbound, address: "127.0.0.1:0", direction: outbound, routeConfig: main, limits: {maxHeaderBytes: %[2]d}}
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - {name: r, clusters: [{name: c}]}
clusters:
- name: c
  endpoints: [{address: %[1]s}]
`, up, maxHeaderBytes)
}

// h1RoundTrip sends one GET on c and returns the status, the body and whether the response
// said "Connection: close".
func h1RoundTrip(t *testing.T, c net.Conn, br *bufio.Reader) (int, string, bool) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Close
}

func dialH1(t *testing.T, a string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", a, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", a, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// h2Get sends GET / as stream id on an h2c connection and reads frames until the stream ends
// and, when wantGoAway, until a GOAWAY or the answer to a PING sent after the stream ended (a
// GOAWAY the response asked for is written before it). It returns the status and whether a
// GOAWAY came.
func h2Get(t *testing.T, fr *http2.Framer, id uint32, wantGoAway bool) (string, bool) {
	t.Helper()
	var block []byte
	enc := hpack.NewEncoder(sliceWriter{&block})
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	status, ended, goAway, pinged := "", false, false, false
	for !ended || (wantGoAway && !goAway) {
		if ended && !pinged {
			pinged = true
			if err := fr.WritePing(false, [8]byte{'r', 'e', 't', 'i', 'r', 'e'}); err != nil {
				t.Fatal(err)
			}
		}
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream %d: %v (ended %v, GOAWAY %v)", id, err, ended, goAway)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.PseudoValue("status") != "" {
				status = f.PseudoValue("status")
			}
			ended = ended || (f.StreamID == id && f.StreamEnded())
		case *http2.DataFrame:
			ended = ended || (f.StreamID == id && f.StreamEnded())
		case *http2.PingFrame:
			if f.IsAck() {
				return status, goAway
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			if f.ErrCode != http2.ErrCodeNo {
				t.Fatalf("GOAWAY with %v, want a graceful one", f.ErrCode)
			}
			goAway = true
		}
	}
	return status, goAway
}

type sliceWriter struct{ b *[]byte }

func (w sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

func dialH2C(t *testing.T, a string) *http2.Framer {
	t.Helper()
	fr := rawH2CClient(t, a)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	return fr
}

// When its pod starts terminating, a sidecar keeps serving both ways; inbound clients are
// asked to leave (HTTP/1 Connection: close, HTTP/2 GOAWAY) on open and new connections, the
// app's outbound connections are left as they are, /ready fails, and reloads still apply,
// to new server generations as well.
func TestRetireAsksInboundClientsToLeaveAndServesOutboundAsBefore(t *testing.T) {
	first := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("first")) })
	second := httpUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("second")) })
	p := startProxy(t, sidecarLikeConfig(first, 16<<10))
	in, out := addr(t, p, "inbound"), addr(t, p, "outbound")

	inKept, inKeptR := dialH1(t, in)
	outKept, outKeptR := dialH1(t, out)
	for _, c := range []struct {
		conn net.Conn
		br   *bufio.Reader
	}{{inKept, inKeptR}, {outKept, outKeptR}} {
		if code, _, closing := h1RoundTrip(t, c.conn, c.br); code != 200 || closing {
			t.Fatalf("before retiring: %d, Connection: close %v", code, closing)
		}
	}
	inH2 := dialH2C(t, in)
	if status, goAway := h2Get(t, inH2, 1, false); status != "200" || goAway {
		t.Fatalf("HTTP/2 before retiring: %s, GOAWAY %v", status, goAway)
	}
	if !p.Ready() {
		t.Fatal("not ready before retiring")
	}

	p.Retire()
	if p.Ready() {
		t.Fatal("still ready once retiring")
	}
	if code, _, closing := h1RoundTrip(t, inKept, inKeptR); code != 200 || !closing {
		t.Fatalf("inbound kept-alive connection while retiring: %d, Connection: close %v; want 200 and close", code, closing)
	}
	if status, goAway := h2Get(t, inH2, 3, true); status != "200" || !goAway {
		t.Fatalf("inbound HTTP/2 while retiring: %s, GOAWAY %v; want 200 and a GOAWAY", status, goAway)
	}
	fresh, freshR := dialH1(t, in)
	if code, _, closing := h1RoundTrip(t, fresh, freshR); code != 200 || !closing {
		t.Fatalf("new inbound connection while retiring: %d, Connection: close %v; want it served, then closed", code, closing)
	}
	for range 3 { // the app's connection stays usable
		if code, _, closing := h1RoundTrip(t, outKept, outKeptR); code != 200 || closing {
			t.Fatalf("outbound while retiring: %d, Connection: close %v; want the app served as before", code, closing)
		}
	}
	outH2 := dialH2C(t, out)
	for id := uint32(1); id <= 3; id += 2 {
		if status, goAway := h2Get(t, outH2, id, false); status != "200" || goAway {
			t.Fatalf("outbound HTTP/2 while retiring: %s, GOAWAY %v", status, goAway)
		}
	}

	// A reload (new endpoints; new limits, so new server generations) still applies, and the
	// new inbound generation still asks clients to leave.
	apply(t, p, sidecarLikeConfig(second, 32<<10))
	fresh, freshR = dialH1(t, in)
	if code, body, closing := h1RoundTrip(t, fresh, freshR); code != 200 || body != "second" || !closing {
		t.Fatalf("inbound after a reload while retiring: %d %q, Connection: close %v; want the new endpoint, then close", code, body, closing)
	}
	freshOut, freshOutR := dialH1(t, out)
	if code, body, closing := h1RoundTrip(t, freshOut, freshOutR); code != 200 || body != "second" || closing {
		t.Fatalf("new outbound connection after a reload while retiring: %d %q, Connection: close %v; want the new endpoint", code, body, closing)
	}
}
