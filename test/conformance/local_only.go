package conformance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"testing"
	"time"

	xwebsocket "golang.org/x/net/websocket"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/gateway-api/conformance/utils/grpc"
	"sigs.k8s.io/gateway-api/conformance/utils/roundtripper"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/conformance/utils/websocket"
)

// The local cluster's API server, Service and Pod addresses are routed to this machine through
// one link (hack/cluster/env.sh NODE_LINK). When the cluster is taken down under a running suite
// (another process's cluster-down), those routes go with the link and the same addresses would
// follow the default route off the machine. Every client of the suite therefore dials only
// while the link exists.
var nodeLink = flag.String("knit-node-link", "knit0", "the local cluster's node link (hack/cluster/env.sh NODE_LINK): nothing is dialed without it")

// errClusterDown is what a dial returns once the link is gone.
var errClusterDown = errors.New("the local cluster is down (its node link is gone): not dialing, the address would route off this machine")

func clusterUp() bool {
	_, err := net.InterfaceByName(*nodeLink)
	return err == nil
}

// localDial dials like net.Dialer, but only while the cluster's link exists.
func localDial(ctx context.Context, network, address string) (net.Conn, error) {
	if !clusterUp() {
		return nil, fmt.Errorf("dial %s: %w", address, errClusterDown)
	}
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return d.DialContext(ctx, network, address)
}

// localOnly rebuilds the suite's Kubernetes clients and its HTTP and gRPC clients so that they
// dial through localDial.
func localOnly(t *testing.T, opts *suite.ConformanceOptions) {
	t.Helper()
	if !clusterUp() {
		t.Fatalf("%v (link %s)", errClusterDown, *nodeLink)
	}
	cfg := opts.RestConfig
	cfg.Dial = localDial
	var err error
	if opts.Client, err = client.New(cfg, opts.ClientOptions); err != nil {
		t.Fatalf("Kubernetes client: %v", err)
	}
	if opts.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatalf("Kubernetes clientset: %v", err)
	}
	opts.RoundTripper = &roundtripper.DefaultRoundTripper{Debug: opts.Debug, TimeoutConfig: opts.TimeoutConfig, CustomDialContext: localDial}
	opts.GRPCClient = localGRPC{}
	opts.WebSocketDialer = localWebSocket{}
}

// localWebSocket dials the suite's WebSocket tests only while the cluster's link exists.
type localWebSocket struct{ websocket.DefaultDialer }

func (d localWebSocket) Dial(url, protocol, origin string) (*xwebsocket.Conn, error) {
	if !clusterUp() {
		return nil, fmt.Errorf("WebSocket to %s: %w", url, errClusterDown)
	}
	return d.DefaultDialer.Dial(url, protocol, origin)
}

// localGRPC sends the suite's RPCs only while the cluster's link exists (the suite's client
// dials with grpc-go's own dialer). Each RPC gets a client of its own, as the suite's helper
// makes one when it is given none: one shared client would be shared by tests running in
// parallel, and it keeps one connection for one address at a time.
type localGRPC struct{}

func (localGRPC) SendRPC(t *testing.T, address string, expected grpc.ExpectedResponse, timeout time.Duration) (*grpc.Response, error) {
	if !clusterUp() {
		return nil, fmt.Errorf("RPC to %s: %w", address, errClusterDown)
	}
	c := &grpc.DefaultClient{}
	defer c.Close()
	return c.SendRPC(t, address, expected, timeout)
}

func (localGRPC) Close() {}
