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
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// resourceCache holds the resources of one type for go-control-plane's delta server, shared
// by every stream that reads them, and answers each wildcard stream with only what changed
// since that stream's last response.
//
// Why not go-control-plane's LinearCache: on every update it visits every resource for every
// open watch, and keeps (and copies, per response) a map of every resource's version per
// stream. At 1000 proxies × 1000 Services that was 1 M map operations per EndpointSlice change
// and a third of the control plane's heap (bench-controlplane's profiles). Here a wildcard
// stream's whole state is one number, the cache version its last response brought it to
// (kept, as go-control-plane asks, in the version map the server hands back on the next
// request), and a log of changes, ordered by version, tells what is new since then. Resources
// are marshalled and hashed once, and the same bytes go to every stream.
//
// Named (non-wildcard) subscriptions are answered as LinearCache does, per subscribed name.
type resourceCache struct {
	typeURL string
	budget  *sendBudget // nil: no bound
	// id tells this cache's version marks from any other's (another type, another namespace,
	// a cache made again after its last stream closed).
	id string

	mu      sync.Mutex
	version uint64
	// floor is the oldest version a stream can still be brought forward from: removals before
	// it are forgotten, and a stream still at an older version must reconnect.
	floor   uint64
	items   map[string]*cacheItem
	gone    map[string]uint64 // removed names → the version that removed them
	log     []cacheChange     // by version: what each version set or removed
	watches map[*cacheWatch]struct{}
	queued  int // watches waiting for the send budget
	// all is every item by name as of allAt (allSize bytes): the first response of each new stream.
	all     []*discoveryv3.Resource
	allAt   uint64
	allSize int64
}

type cacheItem struct {
	res     *discoveryv3.Resource // marshalled once, shared by every response
	size    int64
	changed uint64
}

type cacheChange struct {
	version uint64
	name    string
}

type cacheWatch struct {
	req *cachev3.DeltaRequest
	sub cachev3.Subscription
	out chan cachev3.DeltaResponse
	// first: the stream's first request of the type, which is answered even when empty.
	first bool
	// queued while it waits for the send budget; held is what its response took of it.
	queued    bool
	held      int64
	cancelled bool
}

// versionMarkKey is the key, in the version map a wildcard stream's subscription carries, of the
// cache version its last response brought it to. No resource is named with a NUL byte.
const versionMarkKey = "\x00knit-cache-version"

// minCompaction keeps the log from being compacted for every few changes.
const minCompaction = 1024

var _ cachev3.Cache = (*resourceCache)(nil)

func newResourceCache(typeURL string, budget *sendBudget) *resourceCache {
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	return &resourceCache{
		typeURL: typeURL, budget: budget, id: hex.EncodeToString(id),
		items: map[string]*cacheItem{}, gone: map[string]uint64{}, watches: map[*cacheWatch]struct{}{},
	}
}

// UpdateResources sets toUpdate and removes toDelete, as one new version, and answers the
// streams waiting for a change. A resource whose bytes did not change is not sent again.
func (c *resourceCache) UpdateResources(toUpdate map[string]cachetypes.Resource, toDelete []string) error {
	built := make([]*discoveryv3.Resource, 0, len(toUpdate))
	for name, r := range toUpdate {
		b, err := cachev3.MarshalResource(r)
		if err != nil {
			return fmt.Errorf("marshalling %s %q: %w", shortType(c.typeURL), name, err)
		}
		built = append(built, &discoveryv3.Resource{Name: name, Version: cachev3.HashResource(b), Resource: &anypb.Any{TypeUrl: c.typeURL, Value: b}})
	}
	slices.SortFunc(built, func(a, b *discoveryv3.Resource) int { return strings.Compare(a.Name, b.Name) })
	removed := slices.Sorted(slices.Values(toDelete))

	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.version + 1
	n := len(c.log)
	for _, res := range built {
		if old, ok := c.items[res.Name]; ok && old.res.Version == res.Version {
			continue
		}
		c.items[res.Name] = &cacheItem{res: res, size: resourceSize(res), changed: v}
		delete(c.gone, res.Name)
		c.log = append(c.log, cacheChange{v, res.Name})
	}
	for _, name := range removed {
		if _, ok := c.items[name]; !ok {
			continue
		}
		delete(c.items, name)
		c.gone[name] = v
		c.log = append(c.log, cacheChange{v, name})
	}
	if len(c.log) == n {
		return nil // nothing changed
	}
	c.version = v
	for w := range c.watches {
		if w.queued {
			continue // it answers when the budget wakes it, with what is new by then
		}
		_ = c.tryRespondLocked(w, false) // no error: the log is not compacted past a waiting watch
	}
	c.compactLocked()
	return nil
}

// tryRespondLocked sends the watch what its stream lacks, if anything, when the send budget
// allows; else the watch waits in the budget's queue. A watch stays in c.watches until it is
// answered.
func (c *resourceCache) tryRespondLocked(w *cacheWatch, woken bool) error {
	if w.queued { // woken: it is out of the budget's queue
		w.queued = false
		c.queued--
	}
	resp, size, err := c.respondLocked(w, w.first)
	if err != nil || resp == nil {
		return err
	}
	taken, ok := c.budget.tryAcquire(size, woken)
	if !ok {
		w.queued = true
		c.queued++
		c.budget.wait(c, w, size)
		return nil
	}
	// The server's channel holds two responses per type and a stream has one watch per type,
	// so this does not block.
	w.out <- resp
	delete(c.watches, w)
	if w.held = taken; taken > 0 {
		time.AfterFunc(c.budget.hold, func() { c.releaseHeld(w) })
	}
	return nil
}

// retry is the budget waking a waiting watch; it says whether the watch took its turn (sent
// its response, or queued again), so that a turn not taken goes to the next watch.
func (c *resourceCache) retry(w *cacheWatch) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.watches[w]; !ok || w.cancelled || !w.queued {
		return false
	}
	_ = c.tryRespondLocked(w, true) // no error: the log is not compacted past a waiting watch
	_, waiting := c.watches[w]
	return !waiting || w.queued
}

// releaseHeld gives back what the watch's response took of the budget: once the proxy answered
// it (the server cancels the watch on the stream's next request of the type, or when the stream
// ends), or once it held it for the budget's hold time.
func (c *resourceCache) releaseHeld(w *cacheWatch) {
	c.mu.Lock()
	held := w.held
	w.held = 0
	c.mu.Unlock()
	c.budget.release(held)
}

func resourceSize(r *discoveryv3.Resource) int64 {
	return int64(len(r.GetResource().GetValue()) + len(r.GetName()) + len(r.GetVersion()) + 16)
}

// compactLocked drops log entries that later ones replaced and, once removals outnumber the
// resources, forgets the older half of them (streams still behind those reconnect).
func (c *resourceCache) compactLocked() {
	if len(c.gone) > len(c.items)+minCompaction && c.queued == 0 {
		versions := make([]uint64, 0, len(c.gone))
		for _, v := range c.gone {
			versions = append(versions, v)
		}
		slices.Sort(versions)
		c.floor = versions[len(versions)/2]
		for name, v := range c.gone {
			if v <= c.floor {
				delete(c.gone, name)
			}
		}
	}
	if len(c.log) <= 2*(len(c.items)+len(c.gone))+minCompaction {
		return
	}
	kept := c.log[:0]
	for _, ch := range c.log {
		if c.current(ch) {
			kept = append(kept, ch)
		}
	}
	clear(c.log[len(kept):])
	c.log = kept
}

// current says whether a log entry is still the latest word on its name.
func (c *resourceCache) current(ch cacheChange) bool {
	if it, ok := c.items[ch.name]; ok {
		return it.changed == ch.version
	}
	v, ok := c.gone[ch.name]
	return ok && v == ch.version
}

// CreateDeltaWatch answers at once when the stream lacks something (and a new wildcard
// stream even when the type is empty, as the protocol asks); else the watch waits for an update.
func (c *resourceCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	if req.GetTypeUrl() != c.typeURL {
		return nil, status.Errorf(codes.InvalidArgument, "type %s asked of the cache of %s", req.GetTypeUrl(), c.typeURL)
	}
	w := &cacheWatch{req: req, sub: sub, out: out, first: sub.IsWildcard() && req.GetResponseNonce() == ""}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watches[w] = struct{}{}
	if err := c.tryRespondLocked(w, false); err != nil {
		delete(c.watches, w)
		return nil, err
	}
	return func() {
		c.mu.Lock()
		delete(c.watches, w)
		if w.queued {
			w.queued = false
			c.queued--
		}
		w.cancelled = true
		held := w.held
		w.held = 0
		c.mu.Unlock()
		c.budget.release(held)
	}, nil
}

func (c *resourceCache) CreateWatch(*cachev3.Request, cachev3.Subscription, chan cachev3.Response) (func(), error) {
	return nil, status.Error(codes.Unimplemented, "knit serves delta xDS only")
}

func (c *resourceCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, status.Error(codes.Unimplemented, "knit serves delta xDS only")
}

// respondLocked is what the watch's stream lacks, or nil when it lacks nothing (and need not
// be answered anyway).
func (c *resourceCache) respondLocked(w *cacheWatch, evenIfEmpty bool) (cachev3.DeltaResponse, int64, error) {
	var (
		updated []*discoveryv3.Resource
		removed []string
		next    map[string]string
	)
	known := w.sub.ReturnedResources()
	if w.sub.IsWildcard() {
		base, ok := c.versionMark(known)
		switch {
		case ok && base < c.floor:
			return nil, 0, status.Errorf(codes.Unavailable, "this stream fell too far behind the %s it was sent; reconnect", shortType(c.typeURL))
		case ok:
			updated, removed = c.sinceLocked(base, known)
		default:
			updated, removed = c.diffLocked(known)
		}
		next = map[string]string{versionMarkKey: c.mark(c.version)}
	} else {
		updated, removed, next = c.namedLocked(w.sub)
	}
	if len(updated) == 0 && len(removed) == 0 && !evenIfEmpty {
		return nil, 0, nil
	}
	var size int64
	if len(updated) > 0 && len(updated) == len(c.all) && &updated[0] == &c.all[0] {
		size = c.allSize
	} else {
		for _, r := range updated {
			size += c.items[r.GetName()].size
		}
	}
	return &cachev3.DeltaPassthroughResponse{
		DeltaRequest:   w.req,
		NextVersionMap: next,
		DeltaDiscoveryResponse: &discoveryv3.DeltaDiscoveryResponse{
			TypeUrl: c.typeURL, Resources: updated, RemovedResources: removed, SystemVersionInfo: c.mark(c.version),
		},
	}, size, nil
}

func (c *resourceCache) mark(v uint64) string { return c.id + "/" + strconv.FormatUint(v, 10) }

// versionMark is the cache version a wildcard stream was last brought to, if this cache set it.
func (c *resourceCache) versionMark(known map[string]string) (uint64, bool) {
	id, v, ok := strings.Cut(known[versionMarkKey], "/")
	if !ok || id != c.id {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil && n <= c.version
}

// sinceLocked is what changed after version base. Names the server marked in the version map
// (a wildcard stream that unsubscribed a name explicitly is owed that name's state again) are
// answered too.
func (c *resourceCache) sinceLocked(base uint64, known map[string]string) (updated []*discoveryv3.Resource, removed []string) {
	i := sort.Search(len(c.log), func(i int) bool { return c.log[i].version > base })
	for _, ch := range c.log[i:] {
		if !c.current(ch) {
			continue
		}
		if it, ok := c.items[ch.name]; ok {
			updated = append(updated, it.res)
		} else {
			removed = append(removed, ch.name)
		}
	}
	for name, v := range known {
		if name == versionMarkKey {
			continue
		}
		it, ok := c.items[name]
		switch {
		case ok && it.changed <= base && it.res.Version != v:
			updated = append(updated, it.res)
		case !ok && c.gone[name] <= base:
			removed = append(removed, name)
		}
	}
	return updated, removed
}

// diffLocked compares every resource with the versions a stream declared (its
// initial_resource_versions when it reconnects), or with nothing.
func (c *resourceCache) diffLocked(known map[string]string) (updated []*discoveryv3.Resource, removed []string) {
	if len(known) == 0 || len(known) == 1 && known[versionMarkKey] != "" {
		return c.allLocked(), nil
	}
	for _, res := range c.allLocked() {
		if known[res.Name] != res.Version {
			updated = append(updated, res)
		}
	}
	for name := range known {
		if _, ok := c.items[name]; !ok && name != versionMarkKey {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	return updated, removed
}

// allLocked is every resource by name; one slice serves every new stream of a version.
func (c *resourceCache) allLocked() []*discoveryv3.Resource {
	if c.all != nil && c.allAt == c.version {
		return c.all
	}
	all := make([]*discoveryv3.Resource, 0, len(c.items))
	var size int64
	for _, it := range c.items {
		all = append(all, it.res)
		size += it.size
	}
	slices.SortFunc(all, func(a, b *discoveryv3.Resource) int { return strings.Compare(a.Name, b.Name) })
	c.all, c.allAt, c.allSize = all, c.version, size
	return all
}

// namedLocked answers a subscription to names: those whose version the stream lacks, and
// those removed or no longer subscribed.
func (c *resourceCache) namedLocked(sub cachev3.Subscription) (updated []*discoveryv3.Resource, removed []string, next map[string]string) {
	known, names := sub.ReturnedResources(), sub.SubscribedResources()
	next = make(map[string]string, len(names))
	for name := range names {
		v, had := known[name]
		if it, ok := c.items[name]; ok {
			if !had || v != it.res.Version {
				updated = append(updated, it.res)
			}
			next[name] = it.res.Version
		} else if had {
			removed = append(removed, name)
		}
	}
	for name := range known {
		if _, ok := names[name]; !ok && name != versionMarkKey {
			removed = append(removed, name)
		}
	}
	slices.SortFunc(updated, func(a, b *discoveryv3.Resource) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(removed)
	return updated, removed, next
}
