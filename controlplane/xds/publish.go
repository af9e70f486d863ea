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
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
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

// publisher serves what the translation produced from resource caches (cache.go), which keep
// each resource with its version and marshalled bytes once, however many streams receive it:
// clusters, endpoints and listeners are the same for every proxy, one cache each; routes depend
// on the client namespace (consumer routes), one cache per namespace with streams open. Each
// update carries only the resources whose content changed; the delta server sends each stream
// only those. (A snapshot cache would marshal every resource again for every stream it answers.)
type publisher struct {
	log   logr.Logger
	cds   *resourceCache
	eds   *resourceCache
	lds   *resourceCache
	cache cachev3.Cache
	// budget bounds the large responses in flight, over every cache.
	budget *sendBudget

	mu    sync.Mutex
	model *translate.Model
	// active are the namespaces with streams open, each with its routes.
	active    map[string]*namespaceRoutes
	sent      map[string]*endpointv3.ClusterLoadAssignment
	clusters  map[string]proto.Message
	listeners map[string]proto.Message
}

// namespaceRoutes are the routes the proxies of one namespace receive, or those of one
// Gateway's proxies together with that Gateway's own listeners.
type namespaceRoutes struct {
	streams int
	rds     *resourceCache
	sent    map[string]proto.Message
	// lds holds a Gateway's bound listeners (nil for a namespace: sidecars share publisher.lds).
	lds           *resourceCache
	sentListeners map[string]proto.Message
}

func newPublisher(log logr.Logger) *publisher {
	budget := newSendBudget(defaultSendBudget)
	p := &publisher{
		budget:    budget,
		log:       log,
		cds:       newResourceCache(resourcev3.ClusterType, budget),
		eds:       newResourceCache(resourcev3.EndpointType, budget),
		lds:       newResourceCache(resourcev3.ListenerType, budget),
		active:    map[string]*namespaceRoutes{},
		sent:      map[string]*endpointv3.ClusterLoadAssignment{},
		clusters:  map[string]proto.Message{},
		listeners: map[string]proto.Message{},
	}
	p.cache = &typeMux{p: p}
	return p
}

// typeMux hands each watch to the cache of its type, and route watches to the cache of the
// node's namespace (node.id was checked against the token's pod before any watch is created).
type typeMux struct{ p *publisher }

var errNoRoutes = status.Error(codes.Internal, "no routes for the node's namespace: the stream was not opened")

func (m *typeMux) cacheFor(typeURL string, node *corev3.Node) (cachev3.Cache, error) {
	switch typeURL {
	case resourcev3.ClusterType:
		return m.p.cds, nil
	case resourcev3.EndpointType:
		return m.p.eds, nil
	case resourcev3.ListenerType:
		m.p.mu.Lock()
		defer m.p.mu.Unlock()
		if r := m.p.active[namespaceHash{}.ID(node)]; r != nil && r.lds != nil {
			return r.lds, nil // a gateway proxy's
		}
		return m.p.lds, nil
	case resourcev3.RouteType:
		m.p.mu.Lock()
		defer m.p.mu.Unlock()
		if ns := m.p.active[namespaceHash{}.ID(node)]; ns != nil {
			return ns.rds, nil
		}
		return nil, errNoRoutes
	}
	return nil, status.Errorf(codes.InvalidArgument, "knit serves no %s", typeURL)
}

func (m *typeMux) CreateWatch(r *cachev3.Request, sub cachev3.Subscription, value chan cachev3.Response) (func(), error) {
	return nil, status.Error(codes.Unimplemented, "knit serves delta xDS only")
}

func (m *typeMux) CreateDeltaWatch(r *cachev3.DeltaRequest, sub cachev3.Subscription, value chan cachev3.DeltaResponse) (func(), error) {
	c, err := m.cacheFor(r.GetTypeUrl(), r.GetNode())
	if err != nil {
		return nil, err
	}
	return c.CreateDeltaWatch(r, sub, value)
}

func (m *typeMux) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, status.Error(codes.Unimplemented, "knit serves delta xDS only")
}

// publish installs a whole translation, in the order a proxy can apply it without dangling
// references: clusters, endpoints, listeners, then each active namespace's routes.
func (p *publisher) publish(_ context.Context, m *translate.Model) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.model = m
	p.clusters = p.update(p.cds, "clusters", p.clusters, named(m.Clusters, func(c *clusterv3.Cluster) string { return c.Name }))
	p.updateEndpointsLocked(m)
	p.listeners = p.update(p.lds, "listeners", p.listeners, named(m.Listeners, func(l *listenerv3.Listener) string { return l.Name }))
	for key, r := range p.active {
		p.updateViewLocked(key, r)
	}
}

// updateViewLocked brings a namespace's routes, or a Gateway's listeners and routes, up to the
// current model (listeners first: routes name them).
func (p *publisher) updateViewLocked(key string, r *namespaceRoutes) {
	res := p.resourcesFor(key)
	if r.lds != nil {
		r.sentListeners = p.update(r.lds, "listeners of "+key, r.sentListeners, named(res.Listeners, func(l *listenerv3.Listener) string { return l.Name }))
	}
	r.sent = p.update(r.rds, "routes of "+key, r.sent, named(res.Routes, func(r *routev3.RouteConfiguration) string { return r.Name }))
}

// named indexes resources by name.
func named[T proto.Message](rs []T, name func(T) string) map[string]proto.Message {
	out := make(map[string]proto.Message, len(rs))
	for _, r := range rs {
		out[name(r)] = r
	}
	return out
}

// update puts into c what differs between sent and next, and returns what c then holds.
func (p *publisher) update(c *resourceCache, what string, sent, next map[string]proto.Message) map[string]proto.Message {
	changed := map[string]cachetypes.Resource{}
	for name, r := range next {
		if old, ok := sent[name]; !ok || !proto.Equal(old, r) {
			changed[name] = r
		}
	}
	var removed []string
	for name := range sent {
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
		}
	}
	if len(changed) == 0 && len(removed) == 0 {
		return sent
	}
	if err := c.UpdateResources(changed, removed); err != nil {
		p.log.Error(err, "updating xDS resources", "resources", what)
		return sent
	}
	return next
}

func (p *publisher) hasModel() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.model != nil
}

// publishEndpoints sends the ClusterLoadAssignments that differ from those sent; an assignment
// of a cluster the last whole translation did not have waits for the next one (a new Service
// or port is a structural change, translated whole).
func (p *publisher) publishEndpoints(clas []*endpointv3.ClusterLoadAssignment) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := map[string]cachetypes.Resource{}
	for _, cla := range clas {
		if old, ok := p.sent[cla.ClusterName]; ok && !proto.Equal(old, cla) {
			changed[cla.ClusterName] = cla
		}
	}
	if len(changed) == 0 {
		return
	}
	if err := p.eds.UpdateResources(changed, nil); err != nil {
		p.log.Error(err, "updating endpoints")
		return
	}
	for name, cla := range changed {
		p.sent[name] = cla.(*endpointv3.ClusterLoadAssignment)
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

// open counts a stream of a namespace (or a Gateway); the first one gets its routes cache.
func (p *publisher) open(_ context.Context, ns string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.active[ns]
	if r == nil {
		r = &namespaceRoutes{rds: newResourceCache(resourcev3.RouteType, p.budget), sent: map[string]proto.Message{}}
		if strings.HasPrefix(ns, gatewayKeyPrefix) {
			r.lds, r.sentListeners = newResourceCache(resourcev3.ListenerType, p.budget), map[string]proto.Message{}
		}
		if p.model != nil {
			p.updateViewLocked(ns, r)
		}
		p.active[ns] = r
	}
	r.streams++
}

// close forgets a namespace's routes when its last stream ends.
func (p *publisher) close(ns string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r := p.active[ns]; r != nil {
		if r.streams--; r.streams <= 0 {
			delete(p.active, ns)
		}
	}
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
