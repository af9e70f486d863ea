/*
Copyright 2026 The knit Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package xds

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// serveCache runs go-control-plane's delta ADS server over c on a loopback gRPC listener and
// returns a client of it.
func serveCache(t *testing.T, c cachev3.Cache, cb serverv3.Callbacks) discoveryv3.AggregatedDiscoveryServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if cb == nil {
		cb = serverv3.CallbackFuncs{}
	}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, c, cb))
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); g.Stop() })
	return discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
}

// testStream is one delta ADS stream of one type, as a proxy drives it.
type testStream struct {
	t  *testing.T
	st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func openStream(t *testing.T, client discoveryv3.AggregatedDiscoveryServiceClient, first *discoveryv3.DeltaDiscoveryRequest) *testStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hung test fails, it does not hang
	t.Cleanup(cancel)
	st, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.TypeUrl == "" {
		first.TypeUrl = resourcev3.ClusterType
	}
	first.Node = &corev3.Node{Id: "shop/" + t.Name()}
	if err := st.Send(first); err != nil {
		t.Fatal(err)
	}
	return &testStream{t: t, st: st}
}

// recv is the next response, as "updated names | removed names".
func (s *testStream) recv() (resp *discoveryv3.DeltaDiscoveryResponse, summary string) {
	s.t.Helper()
	resp, err := s.st.Recv()
	if err != nil {
		s.t.Fatalf("receiving: %v", err)
	}
	var names []string
	for _, r := range resp.GetResources() {
		names = append(names, r.GetName())
	}
	slices.Sort(names)
	removed := slices.Sorted(slices.Values(resp.GetRemovedResources()))
	return resp, fmt.Sprintf("%v | %v", names, removed)
}

func (s *testStream) ack(resp *discoveryv3.DeltaDiscoveryResponse) {
	s.t.Helper()
	if err := s.st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		s.t.Fatal(err)
	}
}

// expect receives the next response, checks it, and ACKs it.
func (s *testStream) expect(want string) *discoveryv3.DeltaDiscoveryResponse {
	s.t.Helper()
	resp, got := s.recv()
	if got != want {
		s.t.Fatalf("response %s, want %s", got, want)
	}
	s.ack(resp)
	return resp
}

func testCluster(name string, timeout time.Duration) cachetypes.Resource {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(timeout)}
}

func clusters(timeout time.Duration, names ...string) map[string]cachetypes.Resource {
	out := map[string]cachetypes.Resource{}
	for _, n := range names {
		out[n] = testCluster(n, timeout)
	}
	return out
}

func setResources(t *testing.T, c *resourceCache, set map[string]cachetypes.Resource, remove ...string) {
	t.Helper()
	if err := c.UpdateResources(set, remove); err != nil {
		t.Fatal(err)
	}
}

func TestResourceCacheSendsEachStreamWhatChangedSinceItsLastResponse(t *testing.T) {
	c := newResourceCache(resourcev3.ClusterType, nil)
	setResources(t, c, clusters(time.Second, "a", "b", "c"))
	client := serveCache(t, c, nil)

	fresh := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	fresh.expect("[a b c] | []")
	slow := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	first, got := slow.recv() // not acknowledged yet
	if got != "[a b c] | []" {
		t.Fatalf("first response %s", got)
	}

	setResources(t, c, clusters(2*time.Second, "b"), "c")
	fresh.expect("[b] | [c]")
	setResources(t, c, clusters(time.Second, "d"))
	fresh.expect("[d] | []")
	// Setting a resource to the same content is no change: the next response carries only e.
	setResources(t, c, clusters(time.Second, "a"))
	setResources(t, c, clusters(time.Second, "e"))
	fresh.expect("[e] | []")

	// The stream that did not answer gets, once it does, everything since its last response in one.
	slow.ack(first)
	slow.expect("[b d e] | [c]")

	// A new stream gets the current state; a reconnecting one only what differs from the
	// versions it declares, and the removal of what it holds that is gone.
	openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{}).expect("[a b d e] | []")
	resp := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{}).expect("[a b d e] | []")
	declared := map[string]string{"zz": "1"}
	for _, r := range resp.GetResources() {
		declared[r.GetName()] = r.GetVersion()
	}
	declared["b"] = "stale"
	openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{InitialResourceVersions: declared}).expect("[b] | [zz]")
	// Knowing everything, it still gets a first (empty) response, as a wildcard stream must.
	delete(declared, "zz")
	declared["b"] = resp.GetResources()[1].GetVersion()
	openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{InitialResourceVersions: declared}).expect("[] | []")
}

func TestResourceCacheAnswersNamedSubscriptionsPerName(t *testing.T) {
	c := newResourceCache(resourcev3.ClusterType, nil)
	setResources(t, c, clusters(time.Second, "a", "b"))
	client := serveCache(t, c, nil)

	named := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"a", "x"}})
	named.expect("[a] | []")
	setResources(t, c, clusters(2*time.Second, "b")) // not subscribed: nothing for this stream
	setResources(t, c, clusters(time.Second, "x"))
	named.expect("[x] | []")
	setResources(t, c, nil, "a")
	named.expect("[] | [a]")
}

func TestAStreamThatFellBehindForgottenRemovalsReconnects(t *testing.T) {
	c := newResourceCache(resourcev3.ClusterType, nil)
	setResources(t, c, clusters(time.Second, "a"))
	client := serveCache(t, c, nil)

	behind := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	first, _ := behind.recv()
	// More removals than the cache remembers, while the stream does not answer.
	for i := range 2 * (minCompaction + 2) {
		name := fmt.Sprintf("gone-%d", i)
		setResources(t, c, clusters(time.Second, name))
		setResources(t, c, nil, name)
	}
	behind.ack(first)
	if _, err := behind.st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("a stream behind what the cache remembers: %v, want Unavailable (reconnect)", err)
	}
	// Reconnecting with what it holds brings it up to date.
	openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{InitialResourceVersions: map[string]string{"a": "old", "gone-0": "v"}}).expect("[a] | [gone-0]")
}

// waitFor polls cond until it holds (an event the test cannot be told of otherwise).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not: %s", what)
		}
	}
}

func (b *sendBudget) waiters() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiting)
}

func TestLargeResponsesWaitForTheSendBudgetWhichAnswersFree(t *testing.T) {
	// Room for one whole configuration at a time; every response counts.
	budget := &sendBudget{limit: 1, large: 1, hold: time.Hour}
	c := newResourceCache(resourcev3.ClusterType, budget)
	setResources(t, c, clusters(time.Second, "a", "b"))
	client := serveCache(t, c, nil)

	first := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	held, got := first.recv()
	if got != "[a b] | []" {
		t.Fatalf("first stream: %s", got)
	}
	second := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	waitFor(t, "the second stream's response waits for the budget", func() bool { return budget.waiters() == 1 })
	// A change while it waits is part of what it gets once it may.
	setResources(t, c, clusters(time.Second, "c"))
	first.ack(held) // the answer frees the budget
	second.expect("[a b c] | []")
	first.expect("[c] | []")
}

func TestAnUnansweredResponseHoldsTheSendBudgetOnlyForTheHoldTime(t *testing.T) {
	budget := &sendBudget{limit: 1, large: 1, hold: 100 * time.Millisecond}
	c := newResourceCache(resourcev3.ClusterType, budget)
	setResources(t, c, clusters(time.Second, "a"))
	client := serveCache(t, c, nil)

	silent := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	silent.recv() // never answered
	openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{}).expect("[a] | []")
}

func TestSmallResponsesNeverWaitForTheSendBudget(t *testing.T) {
	budget := &sendBudget{limit: 1, large: 1 << 20, hold: time.Hour}
	c := newResourceCache(resourcev3.ClusterType, budget)
	setResources(t, c, clusters(time.Second, "a"))
	client := serveCache(t, c, nil)

	silent := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	silent.recv()
	openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{}).expect("[a] | []")
}

func TestAWaitingStreamThatEndsPassesItsTurnOn(t *testing.T) {
	budget := &sendBudget{limit: 1, large: 1, hold: time.Hour}
	c := newResourceCache(resourcev3.ClusterType, budget)
	setResources(t, c, clusters(time.Second, "a"))
	client := serveCache(t, c, nil)

	first := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	held, _ := first.recv()
	ctx, cancel := context.WithCancel(context.Background())
	gone, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := gone.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, Node: &corev3.Node{Id: "shop/gone"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second stream waits", func() bool { return budget.waiters() == 1 })
	third := openStream(t, client, &discoveryv3.DeltaDiscoveryRequest{})
	waitFor(t, "the third stream waits", func() bool { return budget.waiters() == 2 })
	cancel() // the second stream ends while it waits
	first.ack(held)
	third.expect("[a] | []")
}
