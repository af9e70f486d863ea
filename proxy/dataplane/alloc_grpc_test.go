package dataplane

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/knit-mesh/knit/proxy/h2relay"
)

// The gRPC server-streaming path (h2c client → knit → h2c upstream, a cluster of protocol
// http2) joins the allocation ceilings: one call, a 64-byte request message and
// grpcStreamMessages 64-byte response messages, with a raw-frame client and upstream that
// allocate nothing per call.
func init() {
	requestPaths = append(requestPaths, struct {
		name  string
		setup func(testing.TB) func() error
	}{"grpc-server-stream", func(t testing.TB) func() error {
		t.Setenv(h2relay.EnvSwitch, "off") // net/http's HTTP/2 server and transport
		return setupGRPCStreamPath(t)
	}})
	// 2026-12-02: 141 per call of 100 messages (identical over runs; 142 before the route
	// table's SplitHostPort stopped allocating its error), nearly all net/http's
	// HTTP/2 server and transport: streams, requests and responses on both sides, header maps
	// and hpack strings, contexts and a timer per call. knit's own: the trailer announcement.
	allocCeilings["grpc-server-stream"] = 141
	// The same call through the HTTP/2 frame relay (proxy/h2relay, on by default). 2026-12-02:
	// 57 per call (58 before the same change): the decoded header blocks (hpack strings, field slices) of both sides, the
	// request's header map for route matching, the stream and its route-timeout timer.
	requestPaths = append(requestPaths, struct {
		name  string
		setup func(testing.TB) func() error
	}{"grpc-server-stream-relayed", func(t testing.TB) func() error {
		t.Setenv(h2relay.EnvSwitch, "")
		return setupGRPCStreamPath(t)
	}})
	allocCeilings["grpc-server-stream-relayed"] = 57
}

const grpcStreamMessages = 100

// grpcMessage is one length-prefixed gRPC message of 64 bytes.
var grpcMessage = append([]byte{0, 0, 0, 0, 64}, bytes.Repeat([]byte{'m'}, 64)...)

// encodeNeverIndexed is a header block that stays valid on any connection (no dynamic table).
func encodeNeverIndexed(fields ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for i := 0; i < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: true})
	}
	return b.Bytes()
}

// grpcStreamUpstream answers every call, once its request has ended, with response headers,
// grpcStreamMessages messages in one DATA frame and an OK trailer.
func grpcStreamUpstream(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	head := encodeNeverIndexed(":status", "200", "content-type", "application/grpc")
	trailer := encodeNeverIndexed("grpc-status", "0")
	body := bytes.Repeat(grpcMessage, grpcStreamMessages)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := br.Discard(len(http2.ClientPreface)); err != nil {
					return
				}
				fr := http2.NewFramer(c, br)
				fr.SetReuseFrames()
				if fr.WriteSettings() != nil || fr.WriteWindowUpdate(0, 1<<30) != nil {
					return
				}
				var received uint32
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
					case *http2.PingFrame:
						if !f.IsAck() && fr.WritePing(true, f.Data) != nil {
							return
						}
					case *http2.DataFrame:
						if received += f.Length; received > 1<<20 {
							if fr.WriteWindowUpdate(0, received) != nil {
								return
							}
							received = 0
						}
					}
					if h := f.Header(); h.Flags.Has(http2.FlagDataEndStream) && (h.Type == http2.FrameData || h.Type == http2.FrameHeaders) {
						id := h.StreamID
						if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: head, EndHeaders: true}) != nil ||
							fr.WriteData(id, false, body) != nil ||
							fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: trailer, EndStream: true, EndHeaders: true}) != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// setupGRPCStreamPath: a raw h2c client making one server-streaming call after another on one
// connection through knit to grpcStreamUpstream.
func setupGRPCStreamPath(t testing.TB) func() error {
	p := startProxy(t, proxyConfig("protocol: http", "", "protocol: http2", grpcStreamUpstream(t)))
	fr := rawH2CClient(t, p.ListenerAddr("in").String())
	headers := encodeNeverIndexed(":method", "POST", ":scheme", "http", ":authority", "bench.example",
		":path", "/knit.bench.Bench/Stream", "content-type", "application/grpc", "te", "trailers")
	want := grpcStreamMessages * len(grpcMessage)
	stream, consumed := uint32(1), uint32(0)
	return func() error {
		id := stream
		stream += 2
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headers, EndHeaders: true}); err != nil {
			return err
		}
		if err := fr.WriteData(id, true, grpcMessage); err != nil {
			return err
		}
		got := 0
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return err
			}
			if handled, err := answerControlFrame(fr, f); err != nil {
				return err
			} else if handled {
				continue
			}
			switch f := f.(type) {
			case *http2.DataFrame:
				if f.StreamID != id {
					continue
				}
				got += len(f.Data())
				if consumed += f.Length; consumed > rawH2CWindow/2 {
					if err := fr.WriteWindowUpdate(0, consumed); err != nil {
						return err
					}
					consumed = 0
				}
				if f.StreamEnded() {
					return errors.New("response ended without a trailer")
				}
			case *http2.HeadersFrame:
				if f.StreamID == id && f.StreamEnded() {
					if got != want {
						return fmt.Errorf("%d bytes of messages, want %d", got, want)
					}
					return nil
				}
			}
		}
	}
}
