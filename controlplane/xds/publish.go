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
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/knit-mesh/knit/controlplane/translate"
)

// namespaceHash keys snapshots by the node's namespace: a proxy's configuration depends only on
// its namespace (consumer routes), so every pod of a namespace shares one snapshot. node.id has
// been checked against the pod's token before the cache sees it.
type namespaceHash struct{}

func (namespaceHash) ID(node *corev3.Node) string {
	return snapshotKey(node) // a gateway proxy's is its Gateway's (gateway.go)
}

// Snapshot turns one client namespace's resources into a go-control-plane snapshot.
func Snapshot(version string, res translate.Resources) (*cachev3.Snapshot, error) {
	out := map[resourcev3.Type][]cachetypes.Resource{}
	for _, c := range res.Clusters {
		out[resourcev3.ClusterType] = append(out[resourcev3.ClusterType], c)
	}
	for _, c := range res.LoadAssignment {
		out[resourcev3.EndpointType] = append(out[resourcev3.EndpointType], c)
	}
	for _, l := range res.Listeners {
		out[resourcev3.ListenerType] = append(out[resourcev3.ListenerType], l)
	}
	for _, r := range res.Routes {
		out[resourcev3.RouteType] = append(out[resourcev3.RouteType], r)
	}
	return cachev3.NewSnapshot(version, out)
}

// publisher serves what the translation produced through two caches: endpoints, the same for
// every proxy and the part that changes most, from one linear cache whose per-resource versions
// are computed once per change (not once per namespace); clusters, listeners and routes from
// snapshots per namespace, replaced only when something other than endpoints changed.
type publisher struct {
	log   logr.Logger
	snaps cachev3.SnapshotCache
	eds   *cachev3.LinearCache
	cache cachev3.Cache

	mu      sync.Mutex
	model   *translate.Model
	version uint64
	active  map[string]int // namespace → open streams
	sent    map[string]*endpointv3.ClusterLoadAssignment
}

func newPublisher(log logr.Logger) *publisher {
	p := &publisher{
		log:    log,
		snaps:  cachev3.NewSnapshotCache(true, namespaceHash{}, nil),
		eds:    cachev3.NewLinearCache(resourcev3.EndpointType),
		active: map[string]int{},
		sent:   map[string]*endpointv3.ClusterLoadAssignment{},
	}
	byType := func(typeURL string) string {
		if typeURL == resourcev3.EndpointType {
			return "eds"
		}
		return "snapshot"
	}
	p.cache = &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return byType(r.GetTypeUrl()) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return byType(r.GetTypeUrl()) },
		Caches:        map[string]cachev3.Cache{"eds": p.eds, "snapshot": p.snaps},
	}
	return p
}

// publish installs a new model: changed endpoints go to the linear cache; when structural
// (Services or routes changed, or the first model), every active namespace gets a new snapshot
// of clusters, listeners and routes. The delta server sends each stream only the resources whose
// content changed.
func (p *publisher) publish(ctx context.Context, m *translate.Model, structural bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.updateEndpointsLocked(m)
	if !structural && p.model != nil {
		p.model = m
		return
	}
	p.model = m
	p.version++
	for ns := range p.active {
		p.setLocked(ctx, ns)
	}
}

func (p *publisher) updateEndpointsLocked(m *translate.Model) {
	next := make(map[string]*endpointv3.ClusterLoadAssignment, len(m.LoadAssignment))
	changed := map[string]cachetypes.Resource{}
	for _, cla := range m.LoadAssignment {
		next[cla.ClusterName] = cla
		if old, ok := p.sent[cla.ClusterName]; !ok || !proto.Equal(old, cla) {
			changed[cla.ClusterName] = cla
		}
	}
	var removed []string
	for name := range p.sent {
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		return
	}
	if err := p.eds.UpdateResources(changed, removed); err != nil {
		p.log.Error(err, "updating endpoints")
		return
	}
	p.sent = next
}

func (p *publisher) setLocked(ctx context.Context, ns string) {
	if p.model == nil {
		return // the first translation publishes it
	}
	res := p.resourcesFor(ns)
	res.LoadAssignment = nil // served by the linear cache
	snap, err := Snapshot(versionString(p.version), res)
	if err == nil {
		err = p.snaps.SetSnapshot(ctx, ns, snap)
	}
	if err != nil {
		p.log.Error(err, "setting the xDS snapshot", "namespace", ns)
	}
}

// open counts a stream of a namespace; the first one gets its namespace's snapshot at once.
func (p *publisher) open(ctx context.Context, ns string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active[ns]++
	if p.active[ns] == 1 {
		p.setLocked(ctx, ns)
	}
}

// close forgets a namespace's snapshot when its last stream ends.
func (p *publisher) close(ns string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active[ns]--; p.active[ns] <= 0 {
		delete(p.active, ns)
		p.snaps.ClearSnapshot(ns)
	}
}

func versionString(v uint64) string {
	const digits = "0123456789"
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = digits[v%10]
		v /= 10
	}
	return string(b[i:])
}

// NACK is the last configuration a proxy refused.
type NACK struct {
	Node, TypeURL, Message string
}

// callbacks authenticate each stream's node and observe ACKs and NACKs.
type callbacks struct {
	serverv3.CallbackFuncs
	log     logr.Logger
	metrics *metrics
	pub     *publisher

	mu       sync.Mutex
	streams  map[int64]*streamState
	lastNACK *NACK
}

type streamState struct {
	id     Identity
	key    string // the snapshot it reads: its namespace, or its Gateway's
	node   string // set once node.id was checked
	opened bool   // counted in publisher.active
}

var _ serverv3.Callbacks = (*callbacks)(nil)

func (c *callbacks) OnDeltaStreamOpen(ctx context.Context, streamID int64, _ string) error {
	id, ok := identityFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, errNoIdentity.Error())
	}
	c.mu.Lock()
	c.streams[streamID] = &streamState{id: id}
	c.mu.Unlock()
	return nil
}

func (c *callbacks) OnDeltaStreamClosed(streamID int64, _ *corev3.Node) {
	c.mu.Lock()
	st := c.streams[streamID]
	delete(c.streams, streamID)
	c.mu.Unlock()
	if st != nil && st.opened {
		c.metrics.connected.Dec()
		c.pub.close(st.key)
		c.log.V(1).Info("proxy disconnected", "node", st.node)
	}
}

// OnStreamDeltaRequest checks node.id on the first request against the token's pod (a proxy
// only ever gets its own namespace's configuration) and logs and counts NACKs. A NACK is not
// answered: the server only sends again when a resource changes, so a refused configuration is
// never re-pushed in a loop.
func (c *callbacks) OnStreamDeltaRequest(streamID int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	c.mu.Lock()
	st := c.streams[streamID]
	c.mu.Unlock()
	if st == nil {
		return status.Error(codes.Internal, "unknown stream")
	}
	if st.node == "" {
		err := checkNode(st.id, req.GetNode().GetId())
		if err == nil {
			err = checkGateway(st.id, req.GetNode())
		}
		if err != nil {
			c.metrics.refused.WithLabelValues(status.Code(err).String()).Inc()
			c.log.Info("refused an xDS stream", "pod", st.id.NodeID(), "reason", describe(err))
			return err
		}
		st.node = req.GetNode().GetId()
		st.opened = true
		c.metrics.connected.Inc()
		st.key = snapshotKey(req.GetNode())
		c.pub.open(context.Background(), st.key)
		c.log.V(1).Info("proxy connected", "node", st.node, "version", nodeMeta(req.GetNode(), "PROXY_VERSION"))
	} else if n := req.GetNode(); n != nil && n.GetId() != "" && n.GetId() != st.node {
		err := status.Errorf(codes.PermissionDenied, "node.id changed from %q to %q on one stream", st.node, n.GetId())
		c.metrics.refused.WithLabelValues(codes.PermissionDenied.String()).Inc()
		return err
	}
	if d := req.GetErrorDetail(); d != nil {
		c.metrics.nacks.WithLabelValues(shortType(req.GetTypeUrl())).Inc()
		c.log.Info("proxy refused configuration (NACK)", "node", st.node, "type", req.GetTypeUrl(),
			"nonce", req.GetResponseNonce(), "error", d.GetMessage())
		c.mu.Lock()
		c.lastNACK = &NACK{Node: st.node, TypeURL: req.GetTypeUrl(), Message: d.GetMessage()}
		c.mu.Unlock()
	}
	return nil
}

func (c *callbacks) OnStreamDeltaResponse(_ int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.metrics.responses.WithLabelValues(shortType(resp.GetTypeUrl())).Inc()
}

func nodeMeta(n *corev3.Node, key string) string {
	if v, ok := n.GetMetadata().GetFields()[key]; ok {
		return v.GetStringValue()
	}
	return ""
}
