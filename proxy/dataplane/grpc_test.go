package dataplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// rawCodec lets the test define a gRPC service without generated code: messages are raw bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

var _ encoding.Codec = rawCodec{}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "knit.test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Bidi", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error {
			for {
				var m []byte
				if err := s.RecvMsg(&m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				if string(m) == "fail" {
					return status.Error(codes.ResourceExhausted, "asked to fail")
				}
				out := append([]byte("echo:"), m...)
				if err := s.SendMsg(&out); err != nil {
					return err
				}
			}
		},
	}},
}

func TestGRPCBidiStreamingThroughProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	srv.RegisterService(&echoDesc, nil)
	go srv.Serve(ln)
	defer srv.Stop()

	cfg := fmt.Sprintf(`
listeners:
- name: in
  address: 127.0.0.1:0
  routeConfig: main
routeConfigs:
- name: main
  virtualHosts:
  - name: all
    routes:
    - name: echo
      match: {prefix: /knit.test.Echo/}
      clusters: [{name: grpc}]
clusters:
- name: grpc
  protocol: http2
  endpoints: [{address: %s}]
`, ln.Addr())
	p := startProxy(t, cfg)
	cc, err := grpc.NewClient(addr(t, p, "in"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Interleaved send/receive proves the proxy streams both ways, not buffers.
	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], "/knit.test.Echo/Bidi")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		msg := []byte(fmt.Sprintf("m%d", i))
		if err := st.SendMsg(&msg); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if err := st.RecvMsg(&got); err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if string(got) != "echo:"+string(msg) {
			t.Fatalf("got %q", got)
		}
	}
	st.CloseSend()
	var tail []byte
	if err := st.RecvMsg(&tail); err != io.EOF {
		t.Fatalf("want clean end of stream (grpc-status 0 in trailers), got %v", err)
	}

	// A non-OK status travels in trailers and is counted by grpc_status.
	st2, _ := cc.NewStream(ctx, &echoDesc.Streams[0], "/knit.test.Echo/Bidi")
	fail := []byte("fail")
	st2.SendMsg(&fail)
	var m []byte
	err = st2.RecvMsg(&m)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("want ResourceExhausted through the proxy, got %v", err)
	}

	// Unknown gRPC path: the proxy answers as gRPC (UNIMPLEMENTED), not with an HTTP 404 page.
	st3, _ := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/other.Svc/Method")
	st3.SendMsg(&fail)
	st3.CloseSend()
	if err := st3.RecvMsg(&m); status.Code(err) != codes.Unimplemented {
		t.Fatalf("want Unimplemented for unrouted gRPC, got %v", err)
	}

	waitFor(t, "grpc metrics", func() bool {
		return metricValue(t, p, "knit_requests_total", `route="echo"`, `grpc_status="0"`, `classification="success"`) == "1" &&
			metricValue(t, p, "knit_requests_total", `route="echo"`, `grpc_status="8"`, `classification="failure"`) == "1"
	})
}

func TestDrainLetsGRPCStreamFinish(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	srv.RegisterService(&echoDesc, nil)
	go srv.Serve(ln)
	defer srv.Stop()
	cfg := fmt.Sprintf(`
listeners: [{name: in, address: "127.0.0.1:0", routeConfig: main}]
routeConfigs:
- name: main
  virtualHosts: [{name: all, routes: [{name: echo, clusters: [{name: grpc}]}]}]
clusters:
- {name: grpc, protocol: http2, endpoints: [{address: "%s"}]}
`, ln.Addr())
	c, _ := configParse(t, cfg)
	p := New(discard(), newMetrics())
	if err := p.Apply(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr(t, p, "in"), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &echoDesc.Streams[0], "/knit.test.Echo/Bidi")
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(i int) {
		msg := []byte(fmt.Sprintf("m%d", i))
		if err := st.SendMsg(&msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		var got []byte
		if err := st.RecvMsg(&got); err != nil || string(got) != "echo:"+string(msg) {
			t.Fatalf("recv %d: %q %v", i, got, err)
		}
	}
	exchange(0)
	drained := make(chan error, 1)
	go func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer dcancel()
		drained <- p.Drain(dctx)
	}()
	waitFor(t, "the listener to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", addr(t, p, "in"), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// The stream that was open when draining began keeps working to its end.
	for i := 1; i <= 20; i++ {
		exchange(i)
	}
	st.CloseSend()
	var tail []byte
	if err := st.RecvMsg(&tail); err != io.EOF {
		t.Fatalf("stream did not end cleanly during drain: %v", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
	}
}
