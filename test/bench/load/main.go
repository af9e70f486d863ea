// Command load is make bench's own load generator and upstream for the shapes fortio does not
// cover: many HTTP/2 streams on few h2c connections, gRPC unary and server-streaming calls (with
// a Go gRPC upstream), and opaque TCP bulk transfer. Clients run closed loops (as fast as the
// path allows) for a duration and print one JSON line: {"requests", "errors", "bytes", "seconds"}
// (for streams, requests counts messages). A benchmark fixture, not a product binary.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var (
	mode     = flag.String("mode", "", "h2c | grpc-unary | grpc-stream | tcp (clients); grpc-server | tcp-sink (upstreams)")
	addr     = flag.String("addr", "", "client: the address to load; upstream: the address to listen on")
	conns    = flag.Int("c", 4, "connections")
	streams  = flag.Int("s", 16, "concurrent requests (streams) per connection")
	duration = flag.Duration("t", 5*time.Second, "length of the run")
	path     = flag.String("path", "/", "h2c: the request path")
	size     = flag.Int("size", 64, "gRPC: message size in bytes; tcp: write size")
	perCall  = flag.Int("stream-messages", 100, "grpc-server: messages per server-streaming call")
)

// result is the client's output line.
type result struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	LastErr  string  `json:"last_error,omitempty"`
}

func main() {
	flag.Parse()
	switch *mode {
	case "grpc-server":
		serveGRPC()
	case "tcp-sink":
		serveSink()
	case "h2c", "grpc-unary", "grpc-stream", "tcp":
		runClient()
	default:
		fail(fmt.Errorf("unknown -mode %q", *mode))
	}
}

// rawCodec carries messages as bytes, so the benchmark needs no generated protobuf code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	p := v.(*[]byte)
	*p = append((*p)[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var service = grpc.ServiceDesc{
	ServiceName: "knit.bench.Bench",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Unary", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		var in []byte
		if err := dec(&in); err != nil {
			return nil, err
		}
		return &in, nil // echo
	}}},
	Streams: []grpc.StreamDesc{{StreamName: "Stream", ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
		var in []byte
		if err := s.RecvMsg(&in); err != nil {
			return err
		}
		for range *perCall {
			if err := s.SendMsg(&in); err != nil {
				return err
			}
		}
		return nil
	}}},
}

func serveGRPC() {
	l, err := net.Listen("tcp", *addr)
	fail(err)
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.MaxConcurrentStreams(1000))
	s.RegisterService(&service, struct{}{})
	go func() { waitSignal(); s.Stop() }()
	fail(s.Serve(l))
}

// serveSink reads and discards everything each connection sends.
func serveSink() {
	l, err := net.Listen("tcp", *addr)
	fail(err)
	go func() { waitSignal(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(io.Discard, c)
		}()
	}
}

func runClient() {
	var requests, errs, bytes atomic.Int64
	var lastErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	deadline, _ := ctx.Deadline()
	running := func() bool { return time.Now().Before(deadline) && ctx.Err() == nil }
	note := func(err error) {
		// gRPC fails calls at the deadline before ctx says it is done: those are not errors.
		if err != nil && time.Until(deadline) > 50*time.Millisecond {
			errs.Add(1)
			lastErr.Store(err.Error())
		}
	}
	msg := make([]byte, *size)
	var wg sync.WaitGroup
	start := time.Now()
	for range *conns {
		switch *mode {
		case "h2c":
			tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, a)
			}}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			url := "http://" + *addr + *path
			for range *streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for running() {
						req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
						resp, err := cl.Do(req)
						if err != nil {
							note(err)
							continue
						}
						n, err := io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != http.StatusOK {
							err = errors.New(resp.Status)
						}
						if err != nil {
							note(err)
							continue
						}
						requests.Add(1)
						bytes.Add(n)
					}
				}()
			}
		case "grpc-unary", "grpc-stream":
			cc, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
			fail(err)
			defer cc.Close()
			for range *streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out := []byte(nil)
					for running() {
						if *mode == "grpc-unary" {
							if err := cc.Invoke(ctx, "/knit.bench.Bench/Unary", &msg, &out); err != nil {
								note(err)
								continue
							}
							requests.Add(1)
							bytes.Add(int64(len(out)))
							continue
						}
						s, err := cc.NewStream(ctx, &service.Streams[0], "/knit.bench.Bench/Stream")
						if err == nil {
							err = s.SendMsg(&msg)
						}
						if err == nil {
							err = s.CloseSend()
						}
						for err == nil {
							if err = s.RecvMsg(&out); err == nil {
								requests.Add(1)
								bytes.Add(int64(len(out)))
							}
						}
						if !errors.Is(err, io.EOF) {
							note(err)
						}
					}
				}()
			}
		case "tcp":
			c, err := net.Dial("tcp", *addr)
			fail(err)
			buf := make([]byte, max(*size, 64<<10))
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetWriteDeadline(start.Add(*duration))
				for {
					n, err := c.Write(buf)
					bytes.Add(int64(n))
					if err != nil {
						if !errors.Is(err, os.ErrDeadlineExceeded) {
							note(err)
						}
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	r := result{Requests: requests.Load(), Errors: errs.Load(), Bytes: bytes.Load(), Seconds: time.Since(start).Seconds()}
	if s, ok := lastErr.Load().(string); ok {
		r.LastErr = s
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

func waitSignal() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}
