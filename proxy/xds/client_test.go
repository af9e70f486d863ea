package xds

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/knit-mesh/knit/proxy/config"
	"github.com/knit-mesh/knit/proxy/dataplane"
	"github.com/knit-mesh/knit/proxy/metrics"
)

const (
	vip        = "10.96.0.10"
	clusterA   = "outbound|80||web.shop.svc.cluster.local"
	routeName  = "web.shop.svc.cluster.local:80"
	listenerIP = vip
)

// sidecar is a real data plane whose captured outbound listener sees every
// connection as going to vip:80, fed by a real xDS client.
type sidecar struct {
	proxy  *dataplane.Proxy
	client *Client
	token  string
	stop   context.CancelFunc
	done   chan struct{}
}

func startSidecar(t *testing.T, p pki, cpAddr string, token ...string) *sidecar {
	t.Helper()
	base, err := config.Parse([]byte(`
listeners:
- {name: outbound, address: "127.0.0.1:0", direction: outbound, originalDestination: true, detectTimeout: 200ms}
`))
	if err != nil {
		t.Fatal(err)
	}
	dp := dataplane.New(logr.Discard(), metrics.New())
	dst := netip.MustParseAddrPort(vip + ":80")
	dp.OriginalDst = func(net.Conn) (netip.AddrPort, error) { return dst, nil }
	if err := dp.Apply(context.Background(), base); err != nil {
		t.Fatal(err)
	}
	s := &sidecar{proxy: dp, token: filepath.Join(t.TempDir(), "token"), done: make(chan struct{})}
	writeToken(t, s.token, append(token, "token-1")[0])
	s.client, err = New(Options{Address: cpAddr, ServerName: testServerName, TrustBundle: p.bundle, TokenFile: s.token,
		NodeID: testNode, Metadata: map[string]string{"POD_IP": "10.1.0.7", "REVISION": "r1"},
		BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, base, dp.Apply, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go func() { defer close(s.done); s.client.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		dp.Drain(dctx)
	})
	return s
}

// get sends one request to the Service address through the sidecar.
func (s *sidecar) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.proxy.ListenerAddr("outbound").String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func backend(t *testing.T, name string) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func webSnapshot(t *testing.T, cluster *clusterv3.Cluster, endpoints ...string) map[resource.Type][]types.Resource {
	return map[resource.Type][]types.Resource{
		resource.ClusterType:  {cluster},
		resource.EndpointType: {assignment(cluster.GetName(), endpoints...)},
		resource.ListenerType: {httpListener(t, vip, 80, routeName, cluster.GetName())},
		resource.RouteType:    {routeTo(routeName, cluster.GetName())},
	}
}

func newCache() cachev3.SnapshotCache { return cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil) }

func TestClientAppliesTheControlPlanesConfigAndAcks(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	web := backend(t, "web-1")
	cp.set("1", webSnapshot(t, edsCluster(clusterA), web))
	s := startSidecar(t, p, cp.addr)

	<-s.client.Synced()
	if code, body := s.get(t, "/"); code != 200 || body != "web-1" {
		t.Fatalf("request to the Service address: %d %q, want the endpoint from EDS", code, body)
	}
	tokens, nodes, nacks, _ := cp.seen()
	if !contains(tokens, "token-1") || !contains(nodes, testNode) || len(nacks) != 0 {
		t.Fatalf("server saw tokens %v, nodes %v, nacks %v", tokens, nodes, nacks)
	}
	waitFor(t, "an ACK of each type", func() bool { _, _, _, acks := cp.seen(); return acks >= 4 })

	// A new endpoint set reaches the running proxy.
	web2 := backend(t, "web-2")
	cp.set("2", webSnapshot(t, edsCluster(clusterA), web2))
	waitFor(t, "the new endpoint", func() bool { _, body := s.get(t, "/"); return body == "web-2" })
}

func TestClientNacksAFieldItDoesNotReadAndKeepsServing(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	web := backend(t, "web-1")
	cp.set("1", webSnapshot(t, edsCluster(clusterA), web))
	s := startSidecar(t, p, cp.addr)
	<-s.client.Synced()

	// A cluster with a field knit-proxy does not read (and a change it
	// would read: round robin), next to an unchanged endpoint set.
	bad := edsCluster(clusterA)
	bad.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	bad.PerConnectionBufferLimitBytes = wrapperspb.UInt32(1024)
	cp.set("2", webSnapshot(t, bad, web))
	waitFor(t, "a NACK", func() bool { _, _, nacks, _ := cp.seen(); return len(nacks) > 0 })
	_, _, nacks, _ := cp.seen()
	want := `Cluster "` + clusterA + `": per_connection_buffer_limit_bytes: not read by knit-proxy`
	if !strings.Contains(nacks[0], want) {
		t.Fatalf("NACK %q does not name the field (want %q)", nacks[0], want)
	}
	if code, body := s.get(t, "/"); code != 200 || body != "web-1" {
		t.Fatalf("after a NACK the last accepted config must keep serving: %d %q", code, body)
	}
	if c := s.proxy.CurrentConfig().(*config.Bootstrap).Clusters[0]; c.LBPolicy != config.LBP2CEWMA {
		t.Fatalf("nothing of a NACKed response may be applied: cluster now %+v", c)
	}

	// The next good config is applied.
	cp.set("3", webSnapshot(t, edsCluster(clusterA), backend(t, "web-3")))
	waitFor(t, "the fixed config", func() bool { _, body := s.get(t, "/"); return body == "web-3" })
}

func TestClientKeepsServingWithoutTheControlPlaneAndReconnects(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	cp.set("1", webSnapshot(t, edsCluster(clusterA), backend(t, "web-1")))
	s := startSidecar(t, p, cp.addr)
	<-s.client.Synced()

	// Static stability: the control plane goes away, traffic keeps flowing.
	cp.srv.Stop()
	connects := s.client.Connects.Load()
	waitFor(t, "reconnect attempts", func() bool { return s.client.Connects.Load() > connects+1 })
	if code, body := s.get(t, "/"); code != 200 || body != "web-1" {
		t.Fatalf("without a control plane: %d %q, want the last accepted config", code, body)
	}

	// A restarted control plane (new process, empty state, same address)
	// with a new config; the rotated token is read on reconnect.
	writeToken(t, s.token, "token-2")
	cp2 := startControlPlane(t, p, cp.addr, newCache())
	cp2.set("1", webSnapshot(t, edsCluster(clusterA), backend(t, "web-restarted")))
	waitFor(t, "the restarted control plane's config", func() bool { _, body := s.get(t, "/"); return body == "web-restarted" })
	if tokens, _, _, _ := cp2.seen(); !contains(tokens, "token-2") || contains(tokens, "token-1") {
		t.Fatalf("the token must be re-read on reconnect; the new server saw %v", tokens)
	}
}

func TestClientRemovesResourcesTheControlPlaneDrops(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	cp.set("1", webSnapshot(t, edsCluster(clusterA), backend(t, "web-1")))
	s := startSidecar(t, p, cp.addr)
	<-s.client.Synced()
	if _, body := s.get(t, "/"); body != "web-1" {
		t.Fatalf("got %q", body)
	}
	// The Service is gone: its virtual listener too, so the original
	// destination (10.96.0.10:80, unreachable here) is used again.
	cp.set("2", map[resource.Type][]types.Resource{})
	waitFor(t, "the virtual listener removed", func() bool {
		cfg := s.proxy.CurrentConfig().(*config.Bootstrap)
		return len(cfg.VirtualListeners) == 0 && len(cfg.Clusters) == 0
	})
}

func TestClientReloadKeepsInFlightRequests(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	release := make(chan struct{})
	started := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "slow-old")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	cp.set("1", webSnapshot(t, edsCluster(clusterA), slow.Listener.Addr().String()))
	s := startSidecar(t, p, cp.addr)
	<-s.client.Synced()

	type result struct {
		code int
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + s.proxy.ListenerAddr("outbound").String() + "/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		inflight <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-started

	// A new config moves the route to another cluster while the request waits.
	other := edsCluster("outbound|80||web-v2.shop.svc.cluster.local")
	res := webSnapshot(t, other, backend(t, "v2"))
	res[resource.ClusterType] = append(res[resource.ClusterType], edsCluster(clusterA))
	cp.set("2", res)
	waitFor(t, "the new route", func() bool { _, body := s.get(t, "/"); return body == "v2" })

	close(release)
	r := <-inflight
	if r.err != nil || r.code != 200 || r.body != "slow-old" {
		t.Fatalf("the in-flight request must finish on its old route: %d %q %v", r.code, r.body, r.err)
	}
}

func TestClientIsNotSyncedWhileRefused(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	cp.set("1", webSnapshot(t, edsCluster(clusterA), backend(t, "web-1")))
	s := startSidecar(t, p, cp.addr, "revoked-token")
	waitFor(t, "several refused attempts", func() bool { return s.client.Connects.Load() >= 3 })
	if s.client.HasConfig() || s.client.Acks.Load() != 0 {
		t.Fatal("a refused proxy must not count as configured")
	}
	if cfg := s.proxy.CurrentConfig().(*config.Bootstrap); len(cfg.VirtualListeners) != 0 {
		t.Fatalf("a refused proxy applied config: %+v", cfg.VirtualListeners)
	}
}

func TestClientRefusesAControlPlaneItCannotVerify(t *testing.T) {
	trusted, impostor := newPKI(t), newPKI(t)
	cp := startControlPlane(t, impostor, "127.0.0.1:0", newCache())
	cp.set("1", webSnapshot(t, edsCluster(clusterA), backend(t, "evil")))
	s := startSidecar(t, trusted, cp.addr)
	waitFor(t, "several attempts", func() bool { return s.client.Connects.Load() >= 3 })
	if s.client.HasConfig() {
		t.Fatal("accepted config from a server the trust bundle does not vouch for")
	}
	if tokens, _, _, _ := cp.seen(); len(tokens) != 0 {
		t.Fatalf("the token was sent to an unverified server: %v", tokens)
	}
}

func TestBackoffIsJitteredAndBounded(t *testing.T) {
	base, maxD := 100*time.Millisecond, time.Second
	for n := 0; n < 10; n++ {
		ceil := min(base<<n, maxD)
		for range 50 {
			if d := backoff(n, base, maxD); d < ceil/2 || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, ceil/2, ceil)
			}
		}
	}
}

func TestClientRefusesAResponseLargerThanItsLimitAndKeepsServing(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	cp.set("1", webSnapshot(t, edsCluster(clusterA), backend(t, "web-1")))
	s := startSidecar(t, p, cp.addr)
	<-s.client.Synced()

	// A second client of the same proxy with a 4 KiB limit never takes the
	// (larger) route table: the stream fails and nothing is applied.
	big := routeTo(routeName, clusterA)
	for i := 0; i < 200; i++ {
		r := routeTo(routeName, clusterA).VirtualHosts[0].Routes[0]
		r.Name = fmt.Sprintf("route-%03d-with-a-long-name-to-make-the-message-large", i)
		big.VirtualHosts[0].Routes = append(big.VirtualHosts[0].Routes, r)
	}
	res := webSnapshot(t, edsCluster(clusterA), backend(t, "web-2"))
	res[resource.RouteType] = []types.Resource{big}
	cp.set("2", res)
	var applied atomic.Int32
	small, err := New(Options{Address: cp.addr, ServerName: testServerName, TrustBundle: p.bundle, TokenFile: s.token, NodeID: testNode,
		MaxMessageBytes: 4 << 10, BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond},
		testBase(t), func(ctx context.Context, b *config.Bootstrap) error {
			applied.Add(1)
			return nil
		}, funcr.New(func(p, a string) { t.Log(a) }, funcr.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); small.Run(ctx) }()
	waitFor(t, "reconnects after the oversized response", func() bool { return small.Connects.Load() >= 3 })
	cancel()
	<-done
	if small.HasConfig() || applied.Load() == 0 {
		t.Fatalf("the small responses (CDS first) are applied (%d), the oversized route table never: configured=%v", applied.Load(), small.HasConfig())
	}
	// The first client, with the default limit, takes it.
	waitFor(t, "the large config on the default client", func() bool { _, body := s.get(t, "/"); return body == "web-2" })
}

// The control plane may send responses up to 16 MiB (CONTRACT.md); gRPC's
// own default receive limit is 4 MiB, so this fails without the client's.
func TestClientAcceptsAResponseLargerThanGRPCsDefaultLimit(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	cp.set("1", webSnapshot(t, edsCluster(clusterA), backend(t, "web-1")))
	s := startSidecar(t, p, cp.addr)
	<-s.client.Synced()

	big := routeTo(routeName, clusterA)
	pad := strings.Repeat("x", 900)
	big.VirtualHosts[0].Routes = nil
	for i := 0; i < 6000; i++ { // about 5.5 MB
		r := routeTo(routeName, clusterA).VirtualHosts[0].Routes[0]
		r.Name = fmt.Sprintf("route-%04d-%s", i, pad)
		r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: fmt.Sprintf("/never/%d", i)}}
		big.VirtualHosts[0].Routes = append(big.VirtualHosts[0].Routes, r)
	}
	big.VirtualHosts[0].Routes = append(big.VirtualHosts[0].Routes, &routev3.Route{ // only this table answers so
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "big table"}}}}})
	if n := proto.Size(big); n <= 4<<20 {
		t.Fatalf("route table is %d bytes; the test needs more than 4 MiB", n)
	}
	res := webSnapshot(t, edsCluster(clusterA), backend(t, "web-1"))
	res[resource.RouteType] = []types.Resource{big}
	cp.set("2", res)
	waitFor(t, "the large config applied", func() bool { _, body := s.get(t, "/"); return body == "big table" })
}

// The control plane's retry policy for routes that set none (CONTRACT.md) keeps GETs whole when
// an endpoint of the assignment is already gone: each refused connection is tried again on
// another endpoint. Not by luck: the endpoint that is there answers slowly, so that its latency
// estimate is above the gone one's failure penalty and P2C-EWMA alone would retry on the gone
// endpoint; a retry goes to an endpoint the request has not tried yet.
func TestTheDefaultRetryPolicyMovesGetsOffAnEndpointThatIsGone(t *testing.T) {
	p := newPKI(t)
	cp := startControlPlane(t, p, "127.0.0.1:0", newCache())
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close() // connections to it are refused, as to a pod that has exited
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(120 * time.Millisecond)
		io.WriteString(w, "web-1")
	}))
	t.Cleanup(slow.Close)
	// A connect timeout far above the 1 s of edsCluster: on a machine starved of CPU (make test
	// beside the cluster suites), accepting on loopback took over a second once, a 504 that says
	// nothing about retries.
	cluster := edsCluster(clusterA)
	cluster.ConnectTimeout = durationpb.New(10 * time.Second)
	snap := webSnapshot(t, cluster, goneAddr, slow.Listener.Addr().String())
	rc := snap[resource.RouteType][0].(*routev3.RouteConfiguration)
	rc.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{
		RetryOn: "connect-failure,refused-stream,reset", NumRetries: wrapperspb.UInt32(2)}
	cp.set("1", snap)
	s := startSidecar(t, p, cp.addr)
	<-s.client.Synced()
	for i := range 20 {
		if code, body := s.get(t, "/"); code != 200 || body != "web-1" {
			t.Fatalf("GET %d: %d %q, want every one answered by the endpoint that is there", i, code, body)
		}
	}
}
