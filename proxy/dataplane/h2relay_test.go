package dataplane

import (
	"bytes"
	"context"

	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/knit-mesh/knit/proxy/h2relay"
)

// relayOn leaves the HTTP/2 frame relay on (the default) for proxies the test starts, and
// returns a check that connections really went through it (and not through net/http).
func relayOn(t *testing.T) func() {
	t.Setenv(h2relay.EnvSwitch, "")
	before := h2relay.Served()
	return func() {
		t.Helper()
		if h2relay.Served() == before {
			t.Fatal("no connection went through the HTTP/2 relay")
		}
	}
}

// shapesDesc is a gRPC service with one method per call shape, on raw-byte messages.
// Requests that start with "fail" end with a status and trailer metadata.
var shapesDesc = grpc.ServiceDesc{
	ServiceName: "knit.test.Shapes",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var m []byte
			if err := dec(&m); err != nil {
				return nil, err
			}
			if bytes.HasPrefix(m, []byte("fail")) {
				grpc.SetTrailer(ctx, metadata.Pairs("x-why", "asked-to-fail"))
				return nil, status.Error(codes.FailedPrecondition, "asked to fail")
			}
			out := append([]byte("echo:"), m...)
			return &out, nil
		},
	}},
	Streams: []grpc.StreamDesc{
		{StreamName: "ServerStream", ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			var m []byte
			if err := s.RecvMsg(&m); err != nil {
				return err
			}
			var n, size int
			fmt.Sscanf(string(m), "%d %d", &n, &size)
			for i := range n {
				out := bytes.Repeat([]byte{byte('a' + i%26)}, size)
				if err := s.SendMsg(&out); err != nil {
					return err
				}
			}
			s.SetTrailer(metadata.Pairs("x-sent", fmt.Sprint(n)))
			return nil
		}},
		{StreamName: "ClientStream", ClientStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			total, msgs := 0, 0
			for {
				var m []byte
				if err := s.RecvMsg(&m); err == io.EOF {
					break
				} else if err != nil {
					return err
				}
				for _, b := range m {
					if b != byte('a'+msgs%26) {
						return status.Error(codes.DataLoss, "message corrupted")
					}
				}
				total += len(m)
				msgs++
			}
			out := []byte(fmt.Sprintf("%d %d", msgs, total))
			return s.SendMsg(&out)
		}},
		{StreamName: "Bidi", ServerStreams: true, ClientStreams: true, Handler: echoDesc.Streams[0].Handler},
	},
}

// grpcShapesUpstream runs the Shapes service; started reports each stream's context so a test
// can see it end.
func grpcShapesUpstream(t *testing.T, started chan<- context.Context) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{grpc.ForceServerCodec(rawCodec{}), grpc.MaxRecvMsgSize(16 << 20), grpc.MaxSendMsgSize(16 << 20)}
	if started != nil {
		opts = append(opts, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			started <- ss.Context()
			return h(srv, ss)
		}))
	}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&shapesDesc, nil)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func relayProxy(t *testing.T, upstreamAddr string) *Proxy {
	return startProxy(t, fmt.Sprintf(`
listeners:
- {name: in, address: "127.0.0.1:0", protocol: http, routeConfig: main}
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [{name: shapes, match: {prefix: /knit.test.}, timeout: 5m, clusters: [{name: grpc}]}]}]
clusters:
- {name: grpc, protocol: http2, endpoints: [{address: "%s"}]}
`, upstreamAddr))
}

func grpcClient(t *testing.T, target string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Messages of 3 MiB are larger than every window either side starts with (64 KiB, and the
// relay's 1 MiB per stream), so each call passes only if the relay credits each side as the
// other accepts the data.
func TestRelayCarriesEveryGRPCCallShape(t *testing.T) {
	relayed := relayOn(t)
	p := relayProxy(t, grpcShapesUpstream(t, nil))
	cc := grpcClient(t, addr(t, p, "in"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	big := 3 << 20

	t.Run("unary", func(t *testing.T) {
		in := bytes.Repeat([]byte("u"), big)
		var out []byte
		if err := cc.Invoke(ctx, "/knit.test.Shapes/Unary", &in, &out); err != nil {
			t.Fatal(err)
		}
		if len(out) != big+5 || !bytes.HasPrefix(out, []byte("echo:u")) {
			t.Fatalf("unary answer of %d bytes, want %d", len(out), big+5)
		}
	})
	t.Run("unary status and trailers", func(t *testing.T) {
		in, out := []byte("fail"), []byte(nil)
		var trailer metadata.MD
		err := cc.Invoke(ctx, "/knit.test.Shapes/Unary", &in, &out, grpc.Trailer(&trailer))
		if status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "asked to fail" {
			t.Fatalf("want FailedPrecondition from the upstream, got %v", err)
		}
		if got := trailer.Get("x-why"); len(got) != 1 || got[0] != "asked-to-fail" {
			t.Fatalf("trailer metadata lost: %v", trailer)
		}
	})
	t.Run("server streaming", func(t *testing.T) {
		st, err := cc.NewStream(ctx, &shapesDesc.Streams[0], "/knit.test.Shapes/ServerStream")
		if err != nil {
			t.Fatal(err)
		}
		req := []byte(fmt.Sprintf("%d %d", 6, big))
		st.SendMsg(&req)
		st.CloseSend()
		for i := range 6 {
			var m []byte
			if err := st.RecvMsg(&m); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if len(m) != big || m[0] != byte('a'+i) || m[big-1] != byte('a'+i) {
				t.Fatalf("message %d: %d bytes starting %q", i, len(m), m[:1])
			}
		}
		var m []byte
		if err := st.RecvMsg(&m); err != io.EOF {
			t.Fatalf("want the end of the stream, got %v", err)
		}
		if got := st.Trailer().Get("x-sent"); len(got) != 1 || got[0] != "6" {
			t.Fatalf("trailers: %v", st.Trailer())
		}
	})
	t.Run("client streaming", func(t *testing.T) {
		st, err := cc.NewStream(ctx, &shapesDesc.Streams[1], "/knit.test.Shapes/ClientStream")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			m := bytes.Repeat([]byte{byte('a' + i)}, big)
			if err := st.SendMsg(&m); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
		st.CloseSend()
		var m []byte
		if err := st.RecvMsg(&m); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("5 %d", 5*big); string(m) != want {
			t.Fatalf("upstream saw %q, want %q", m, want)
		}
	})
	t.Run("bidi", func(t *testing.T) {
		st, err := cc.NewStream(ctx, &shapesDesc.Streams[2], "/knit.test.Shapes/Bidi")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			m := bytes.Repeat([]byte{'b'}, i*(big/5))
			if err := st.SendMsg(&m); err != nil {
				t.Fatal(err)
			}
			var got []byte
			if err := st.RecvMsg(&got); err != nil || len(got) != len(m)+5 {
				t.Fatalf("exchange %d: %d bytes, %v", i, len(got), err)
			}
		}
		st.CloseSend()
		var m []byte
		if err := st.RecvMsg(&m); err != io.EOF {
			t.Fatalf("want a clean end, got %v", err)
		}
	})
	waitFor(t, "gRPC statuses counted from the relayed trailers", func() bool {
		return metricValue(t, p, "knit_requests_total", `route="shapes"`, `grpc_status="0"`, `classification="success"`) == "4" &&
			metricValue(t, p, "knit_requests_total", `route="shapes"`, `grpc_status="9"`, `classification="failure"`) == "1"
	})
	relayed()
}

// A client that cancels its call resets the stream (RST_STREAM); the relay resets the
// upstream stream, so the upstream handler's context ends.
func TestRelayPassesAClientCancellationToTheUpstream(t *testing.T) {
	relayed := relayOn(t)
	started := make(chan context.Context, 1)
	p := relayProxy(t, grpcShapesUpstream(t, started))
	cc := grpcClient(t, addr(t, p, "in"))
	ctx, cancel := context.WithCancel(context.Background())
	st, err := cc.NewStream(ctx, &shapesDesc.Streams[2], "/knit.test.Shapes/Bidi")
	if err != nil {
		t.Fatal(err)
	}
	m := []byte("hello")
	st.SendMsg(&m)
	if err := st.RecvMsg(&m); err != nil {
		t.Fatal(err)
	}
	upCtx := <-started
	cancel()
	select {
	case <-upCtx.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream stream was not reset after the client cancelled")
	}
	waitFor(t, "the cancelled call counted as the client's", func() bool {
		return metricValue(t, p, "knit_requests_total", `route="shapes"`, `code="499"`) == "1"
	})
	relayed()
}

// An upstream that resets a stream in the middle of its answer makes the relay reset the
// client's stream: the client sees the body cut, never a clean end.
func TestRelayPassesAnUpstreamResetToTheClient(t *testing.T) {
	relayed := relayOn(t)
	up := h2cUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("partial "))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // net/http's server resets the stream
	}))
	p := relayProxy(t, up)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}, Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + addr(t, p, "in") + "/knit.test.Reset/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil || !strings.Contains(err.Error(), "stream error") || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
		t.Fatalf("want the stream reset with the upstream's code (INTERNAL_ERROR), got body %q and %v", body, err)
	}
	if string(body) != "partial " {
		t.Fatalf("the part before the reset: %q", body)
	}
	waitFor(t, "the reset counted as the upstream's failure", func() bool {
		return metricValue(t, p, "knit_request_failures_total", `route="shapes"`, `reason="upstream_reset"`) == "1"
	})
	relayed()
}

// An upstream that cannot be reached answers gRPC clients with UNAVAILABLE, as the HTTP path.
func TestRelayAnswersUnavailableWhenTheUpstreamIsDown(t *testing.T) {
	relayed := relayOn(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := relayProxy(t, dead)
	cc := grpcClient(t, addr(t, p, "in"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, out := []byte("x"), []byte(nil)
	err = cc.Invoke(ctx, "/knit.test.Shapes/Unary", &in, &out)
	if status.Code(err) != codes.Unavailable || strings.Contains(err.Error(), dead) {
		t.Fatalf("want UNAVAILABLE without the upstream's address, got %v", err)
	}
	relayed()
}

// The gRPC tests of the HTTP path hold through the relay too: bidi streaming, statuses,
// unrouted methods answered UNIMPLEMENTED, and a drain that lets an open stream finish.
func TestRelayKeepsTheGRPCGuaranteesOfTheHTTPPath(t *testing.T) {
	for name, test := range map[string]func(*testing.T){
		"bidi":  TestGRPCBidiStreamingThroughProxy,
		"drain": TestDrainLetsGRPCStreamFinish,
	} {
		t.Run(name, func(t *testing.T) {
			relayed := relayOn(t)
			test(t)
			relayed()
		})
	}
}

// A reload that gives a route something the relay does not do (here a direct response) sends GOAWAY on
// relayed connections, so clients move to new connections, which net/http serves.
func TestRelayHandsConnectionsBackWhenAReloadNeedsTheHTTPPath(t *testing.T) {
	relayed := relayOn(t)
	up := grpcShapesUpstream(t, nil)
	cfg := func(local string) string {
		return fmt.Sprintf(`
listeners:
- {name: in, address: "127.0.0.1:0", protocol: http, routeConfig: main}
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [%s{name: shapes, clusters: [{name: grpc}]}]}]
clusters:
- {name: grpc, protocol: http2, endpoints: [{address: "%s"}]}
`, local, up)
	}
	p := startProxy(t, cfg(""))
	start := h2relay.Served()
	fr := rawH2CClient(t, addr(t, p, "in"))
	waitFor(t, "the connection to be relayed", func() bool { return h2relay.Served() > start })
	relayed()
	apply(t, p, cfg("{name: local, match: {prefix: /local}, directResponse: {status: 204}}, "))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeNo {
				t.Fatalf("GOAWAY with %v, want NO_ERROR", g.ErrCode)
			}
			break
		}
	}
	before := h2relay.Served()
	cc := grpcClient(t, addr(t, p, "in"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, out := []byte("x"), []byte(nil)
	if err := cc.Invoke(ctx, "/knit.test.Shapes/Unary", &in, &out); err != nil || string(out) != "echo:x" {
		t.Fatalf("call after the reload: %q %v", out, err)
	}
	if h2relay.Served() != before {
		t.Fatal("a new connection went through the relay though a route now answers locally")
	}
}

// The relay takes HTTP/2 connections by default; KNIT_H2_RELAY=off hands them to net/http.
func TestRelayIsOnByDefaultAndOffWithTheSwitch(t *testing.T) {
	for _, env := range []string{"", "off"} {
		t.Run("KNIT_H2_RELAY="+env, func(t *testing.T) {
			t.Setenv(h2relay.EnvSwitch, env)
			p := relayProxy(t, grpcShapesUpstream(t, nil))
			before := h2relay.Served()
			cc := grpcClient(t, addr(t, p, "in"))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			in, out := []byte("x"), []byte(nil)
			if err := cc.Invoke(ctx, "/knit.test.Shapes/Unary", &in, &out); err != nil || string(out) != "echo:x" {
				t.Fatalf("call: %q %v", out, err)
			}
			if relayed := h2relay.Served() > before; relayed != (env == "") {
				t.Fatalf("relayed %v with KNIT_H2_RELAY=%q", relayed, env)
			}
		})
	}
}
