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
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// ReportOptions configure the report a control-plane pod writes into its MeshRevision's status
// (status.controlPlanes): how many proxies are connected to it, up to date and refusing their
// configuration.
//
// Every replica of a revision serves its own streams and sees only those, so each replica
// writes its own entry, keyed by its pod name, with server-side apply under a field manager of
// its own: replicas never overwrite each other, and no leader election is needed (a leader
// could not see the other replicas' streams anyway). A replica that dies without removing its
// entry stops renewing it, and readers ignore it once it is older than
// meshv1.ControlPlaneReportExpiry.
type ReportOptions struct {
	// Client writes the MeshRevision's status (patch on meshrevisions/status).
	Client client.Client
	// Revision is the MeshRevision this control plane serves; Pod its own pod's name.
	Revision, Pod string
	// MinInterval is the shortest time between two writes (default 5s): proxies connecting in
	// a burst make one write, not one each.
	MinInterval time.Duration
	// Heartbeat is the longest time between two writes (default
	// meshv1.ControlPlaneReportHeartbeat), so readers can tell a live pod from a dead one.
	Heartbeat time.Duration
}

// maxRejectionMessage bounds the proxy's error detail kept in status.
const maxRejectionMessage = 512

// fieldManager is the replica's own server-side apply field manager.
func (o ReportOptions) fieldManager() string { return "knit-controlplane/" + o.Pod }

// tracker follows, per stream, which responses a proxy has not acknowledged yet and which it
// refused: the content of the pod's report. It sees every request and response through the
// server's callbacks, after the stream's node.id was checked.
type tracker struct {
	serverv3.CallbackFuncs

	mu      sync.Mutex
	streams map[int64]*trackedStream
	// changed is signalled (without blocking) when a count may have changed.
	changed chan struct{}
}

type trackedStream struct {
	node string
	// pending is the nonce of each type's last response, until the proxy answers it.
	pending map[string]string
	// rejected is each type's standing refusal, until the proxy accepts a later response.
	rejected map[string]meshv1.ConfigRejection
	// accepted is set once the proxy accepted a response.
	accepted bool
}

func newTracker() *tracker {
	return &tracker{streams: map[int64]*trackedStream{}, changed: make(chan struct{}, 1)}
}

func (t *tracker) signal() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *tracker) OnDeltaStreamClosed(streamID int64, _ *corev3.Node) {
	t.mu.Lock()
	_, ok := t.streams[streamID]
	delete(t.streams, streamID)
	t.mu.Unlock()
	if ok {
		t.signal()
	}
}

// OnStreamDeltaRequest records ACKs and NACKs. It runs after the callbacks that checked node.id
// (chainCallbacks), so a stream is tracked only once its node is the token's pod.
func (t *tracker) OnStreamDeltaRequest(streamID int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.streams[streamID]
	if st == nil {
		st = &trackedStream{node: req.GetNode().GetId(), pending: map[string]string{}, rejected: map[string]meshv1.ConfigRejection{}}
		t.streams[streamID] = st
		defer t.signal()
	}
	nonce, typ := req.GetResponseNonce(), req.GetTypeUrl()
	if nonce == "" {
		return nil // a subscription, not an answer
	}
	if st.pending[typ] == nonce {
		delete(st.pending, typ)
		defer t.signal()
	}
	if d := req.GetErrorDetail(); d != nil {
		st.rejected[typ] = meshv1.ConfigRejection{
			Proxy: st.node, TypeURL: typ, Message: truncate(d.GetMessage(), maxRejectionMessage), Time: metav1.Now(),
		}
		t.signal()
		return nil
	}
	if _, ok := st.rejected[typ]; ok || !st.accepted {
		delete(st.rejected, typ)
		st.accepted = true
		t.signal()
	}
	return nil
}

func (t *tracker) OnStreamDeltaResponse(streamID int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.streams[streamID]; st != nil {
		st.pending[resp.GetTypeUrl()] = resp.GetNonce()
		if len(st.pending) == 1 {
			t.signal() // it may have been up to date until now
		}
	}
}

// summary is the pod's report as of now, without its time.
func (t *tracker) summary() meshv1.ControlPlaneReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	var r meshv1.ControlPlaneReport
	for _, st := range t.streams {
		r.Connected++
		if len(st.rejected) > 0 {
			r.Rejecting++
			for _, rej := range st.rejected {
				if r.Rejection == nil || rej.Time.After(r.Rejection.Time.Time) ||
					(rej.Time.Equal(&r.Rejection.Time) && rej.Proxy+rej.TypeURL < r.Rejection.Proxy+r.Rejection.TypeURL) {
					rej := rej
					r.Rejection = &rej
				}
			}
			continue
		}
		if st.accepted && len(st.pending) == 0 {
			r.UpToDate++
		}
	}
	return r
}

// gauges are the tracker's counts as Prometheus series, computed when scraped.
func (t *tracker) gauges() []prometheus.Collector {
	gauge := func(name, help string, value func(meshv1.ControlPlaneReport) int32) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(value(t.summary())) })
	}
	return []prometheus.Collector{
		gauge("knit_xds_up_to_date_proxies", "Connected proxies that accepted every response sent to them.",
			func(r meshv1.ControlPlaneReport) int32 { return r.UpToDate }),
		gauge("knit_xds_rejecting_proxies", "Connected proxies whose latest response of some type was a NACK.",
			func(r meshv1.ControlPlaneReport) int32 { return r.Rejecting }),
	}
}

// reporter writes the tracker's summary into the MeshRevision's status.
type reporter struct {
	o       ReportOptions
	log     logr.Logger
	tracker *tracker
}

// run writes the report when it changes (at most every MinInterval) and at least every
// Heartbeat, until ctx ends; then it removes the pod's entry, so the Mesh stops counting its
// proxies at once instead of after the entry expires.
func (r *reporter) run(ctx context.Context) {
	var (
		written     *meshv1.ControlPlaneReport
		writtenAt   time.Time
		failures    int
		wait        time.Duration // until the next write may happen
		heartbeat   = time.NewTimer(0)
		rateLimited = time.NewTimer(0)
	)
	defer heartbeat.Stop()
	defer rateLimited.Stop()
	<-rateLimited.C
	for {
		select {
		case <-ctx.Done():
			r.remove()
			return
		case <-r.tracker.changed:
		case <-heartbeat.C:
		}
		// Hold further changes back until MinInterval after the last write.
		if wait = r.o.MinInterval - time.Since(writtenAt); wait > 0 {
			rateLimited.Reset(wait)
			select {
			case <-ctx.Done():
				r.remove()
				return
			case <-rateLimited.C:
			}
		}
		next := r.tracker.summary()
		if written != nil && sameCounts(*written, next) && time.Since(writtenAt) < r.o.Heartbeat-r.o.MinInterval {
			continue // nothing new; the heartbeat timer still runs
		}
		next.Pod = r.o.Pod
		next.LastUpdateTime = metav1.NewTime(time.Now().Truncate(time.Second))
		if err := r.apply(ctx, []meshv1.ControlPlaneReport{next}); err != nil {
			failures++
			retry := min(r.o.MinInterval<<min(failures, 6), r.o.Heartbeat)
			r.log.Error(err, "writing the proxies' report into the MeshRevision's status; retrying", "revision", r.o.Revision, "in", retry)
			writtenAt = time.Now().Add(retry - r.o.MinInterval)
			written = nil
			heartbeat.Reset(retry)
			continue
		}
		failures = 0
		written, writtenAt = &next, time.Now()
		heartbeat.Reset(r.o.Heartbeat)
		r.log.V(1).Info("reported proxies", "revision", r.o.Revision, "connected", next.Connected,
			"upToDate", next.UpToDate, "rejecting", next.Rejecting)
	}
}

func sameCounts(a, b meshv1.ControlPlaneReport) bool {
	if a.Connected != b.Connected || a.UpToDate != b.UpToDate || a.Rejecting != b.Rejecting || (a.Rejection == nil) != (b.Rejection == nil) {
		return false
	}
	return a.Rejection == nil || *a.Rejection == *b.Rejection
}

// remove applies an empty report: the entry this pod's field manager owns goes away.
func (r *reporter) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.apply(ctx, nil); err != nil {
		r.log.Error(err, "removing the proxies' report from the MeshRevision's status; it expires instead", "revision", r.o.Revision)
	}
}

// apply server-side applies the pod's entry (or, with none, its removal) to the status.
func (r *reporter) apply(ctx context.Context, reports []meshv1.ControlPlaneReport) error {
	gvk := meshv1.GroupVersion.WithKind("MeshRevision")
	body := map[string]any{
		"apiVersion": gvk.GroupVersion().String(),
		"kind":       gvk.Kind,
		"metadata":   map[string]any{"name": r.o.Revision},
	}
	if len(reports) > 0 {
		body["status"] = map[string]any{"controlPlanes": reports}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(gvk)
	obj.SetName(r.o.Revision)
	if err := r.o.Client.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, raw),
		client.FieldOwner(r.o.fieldManager()), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying the status of MeshRevision %s: %w", r.o.Revision, err)
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// chainCallbacks calls each set of callbacks in turn; a request refused by one is not seen by
// the next.
type chainCallbacks []serverv3.Callbacks

var _ serverv3.Callbacks = chainCallbacks(nil)

func (c chainCallbacks) OnStreamOpen(ctx context.Context, id int64, typ string) error {
	for _, cb := range c {
		if err := cb.OnStreamOpen(ctx, id, typ); err != nil {
			return err
		}
	}
	return nil
}

func (c chainCallbacks) OnStreamClosed(id int64, node *corev3.Node) {
	for _, cb := range c {
		cb.OnStreamClosed(id, node)
	}
}

func (c chainCallbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	for _, cb := range c {
		if err := cb.OnStreamRequest(id, req); err != nil {
			return err
		}
	}
	return nil
}

func (c chainCallbacks) OnStreamResponse(ctx context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	for _, cb := range c {
		cb.OnStreamResponse(ctx, id, req, resp)
	}
}

func (c chainCallbacks) OnFetchRequest(ctx context.Context, req *discoveryv3.DiscoveryRequest) error {
	for _, cb := range c {
		if err := cb.OnFetchRequest(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

func (c chainCallbacks) OnFetchResponse(req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	for _, cb := range c {
		cb.OnFetchResponse(req, resp)
	}
}

func (c chainCallbacks) OnDeltaStreamOpen(ctx context.Context, id int64, typ string) error {
	for _, cb := range c {
		if err := cb.OnDeltaStreamOpen(ctx, id, typ); err != nil {
			return err
		}
	}
	return nil
}

func (c chainCallbacks) OnDeltaStreamClosed(id int64, node *corev3.Node) {
	for _, cb := range c {
		cb.OnDeltaStreamClosed(id, node)
	}
}

func (c chainCallbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	for _, cb := range c {
		if err := cb.OnStreamDeltaRequest(id, req); err != nil {
			return err
		}
	}
	return nil
}

func (c chainCallbacks) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	for _, cb := range c {
		cb.OnStreamDeltaResponse(id, req, resp)
	}
}
