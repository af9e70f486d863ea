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
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

func TestTrackerCountsConnectedUpToDateAndRejectingProxies(t *testing.T) {
	tr := newTracker()
	counts := func() [3]int32 {
		s := tr.summary()
		return [3]int32{s.Connected, s.UpToDate, s.Rejecting}
	}
	subscribe := func(id int64, node string) {
		for i, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
			if i == 0 {
				req.Node = &corev3.Node{Id: node}
			}
			if err := tr.OnStreamDeltaRequest(id, req); err != nil {
				t.Fatal(err)
			}
		}
	}
	send := func(id int64, typ, nonce string) {
		tr.OnStreamDeltaResponse(id, nil, &discoveryv3.DeltaDiscoveryResponse{TypeUrl: typ, Nonce: nonce})
	}
	answer := func(id int64, typ, nonce, nack string) {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: nonce}
		if nack != "" {
			req.ErrorDetail = &rpcstatus.Status{Message: nack}
		}
		if err := tr.OnStreamDeltaRequest(id, req); err != nil {
			t.Fatal(err)
		}
	}

	subscribe(1, "shop/a")
	subscribe(2, "shop/b")
	if got := counts(); got != [3]int32{2, 0, 0} {
		t.Fatalf("before any response: %v, want 2 connected, none up to date (no configuration yet)", got)
	}
	send(1, resourcev3.ClusterType, "1")
	send(1, resourcev3.EndpointType, "2")
	answer(1, resourcev3.ClusterType, "1", "")
	if got := counts(); got != [3]int32{2, 0, 0} {
		t.Fatalf("one type still unanswered: %v", got)
	}
	answer(1, resourcev3.EndpointType, "2", "")
	send(2, resourcev3.ClusterType, "1")
	answer(2, resourcev3.ClusterType, "1", "")
	if got := counts(); got != [3]int32{2, 2, 0} {
		t.Fatalf("both acknowledged everything: %v", got)
	}

	send(2, resourcev3.EndpointType, "2")
	answer(2, resourcev3.EndpointType, "2", "endpoint 10.0.0.1 has no port")
	if got := counts(); got != [3]int32{2, 1, 1} {
		t.Fatalf("after a NACK: %v", got)
	}
	rej := tr.summary().Rejection
	if rej == nil || rej.Proxy != "shop/b" || rej.TypeURL != resourcev3.EndpointType || rej.Message != "endpoint 10.0.0.1 has no port" {
		t.Fatalf("rejection %+v", rej)
	}
	// Accepting another type does not clear the refusal; accepting the refused type does.
	send(2, resourcev3.ClusterType, "3")
	answer(2, resourcev3.ClusterType, "3", "")
	if got := counts(); got != [3]int32{2, 1, 1} {
		t.Fatalf("after accepting another type: %v", got)
	}
	send(2, resourcev3.EndpointType, "4")
	answer(2, resourcev3.EndpointType, "4", "")
	if got := counts(); got != [3]int32{2, 2, 0} || tr.summary().Rejection != nil {
		t.Fatalf("after accepting the next endpoints: %v %+v", got, tr.summary().Rejection)
	}

	// A response not yet answered makes the proxy not up to date until it is.
	send(1, resourcev3.EndpointType, "5")
	if got := counts(); got != [3]int32{2, 1, 0} {
		t.Fatalf("awaiting an ACK: %v", got)
	}
	tr.OnDeltaStreamClosed(1, nil)
	if got := counts(); got != [3]int32{1, 1, 0} {
		t.Fatalf("after a disconnect: %v", got)
	}
	send(2, resourcev3.ClusterType, "6")
	answer(2, resourcev3.ClusterType, "6", "cluster x: unknown lb_policy")
	gauges := tr.gauges()
	if up, rejecting := testutil.ToFloat64(gauges[0]), testutil.ToFloat64(gauges[1]); up != 0 || rejecting != 1 {
		t.Errorf("knit_xds_up_to_date_proxies %v, knit_xds_rejecting_proxies %v; want 0 and 1", up, rejecting)
	}
}

func TestRejectionMessagesAreCutAtARuneBoundary(t *testing.T) {
	long := strings.Repeat("é", maxRejectionMessage) // two bytes each
	got := truncate(long, maxRejectionMessage+1)
	if len(got) != maxRejectionMessage || !strings.HasPrefix(long, got) {
		t.Fatalf("cut to %d bytes", len(got))
	}
	if truncate("short", 10) != "short" {
		t.Fatal("a short message changed")
	}
}
