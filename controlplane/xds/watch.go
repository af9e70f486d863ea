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
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/controlplane/translate"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// Informers is the part of a controller-runtime cache the server watches.
type Informers interface {
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
	WaitForCacheSync(ctx context.Context) bool
}

// Scheme knows the kinds the xDS server reads.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, gwv1.Install} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// NewCache is the informer cache the server reads from. Pods are kept only with what the
// translation reads (name, the injection annotation, ServiceAccount, container names), so a
// large cluster's pods cost little memory; the other kinds without their managedFields, which
// nothing here reads (route status is written with Update, which keeps them on the server).
// Secrets are watched only of type kubernetes.io/tls (a field selector: the API server sends no
// other), kept with their name, type and the two keys a certificate needs. Which of them knit
// Gateways name is not something a selector can say, so the cache holds every TLS Secret, and
// the translation reads only those named (translate.ReferencedSecrets).
func NewCache(cfg *rest.Config) (cache.Cache, error) {
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	return cache.New(cfg, cache.Options{
		Scheme:           scheme,
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:    {Transform: stripPod},
			&corev1.Secret{}: {Field: fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS)), Transform: stripSecret},
		},
	})
}

func stripSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	out := &corev1.Secret{
		TypeMeta:   s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion},
		Type:       s.Type,
		Data:       map[string][]byte{},
	}
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
		if v, ok := s.Data[k]; ok {
			out.Data[k] = v
		}
	}
	return out, nil
}

func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels,
		},
		Spec: corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName},
	}
	if rev := p.Annotations[injection.AnnotationInjectedRevision]; rev != "" {
		out.Annotations = map[string]string{injection.AnnotationInjectedRevision: rev}
	}
	for _, c := range p.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name})
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name})
	}
	return out, nil
}

// builder translates the cluster's state into xDS resources, at most once per debounce period.
// A change of Services or routes translates the whole mesh; a change of EndpointSlices or of
// the pods they name only rebuilds the ClusterLoadAssignments of the Services it touches.
type builder struct {
	log         logr.Logger
	reader      client.Reader
	informers   Informers
	status      client.Client
	trustDomain string
	debounce    time.Duration
	pub         *publisher
	metrics     *metrics
	trigger     chan struct{}

	httpRoutes, grpcRoutes   bool // whether the Gateway API kinds are installed
	gateways, gatewayClasses bool
	referenceGrants          bool
	// structural is set when something other than endpoints changed since the last build.
	structural atomic.Bool
	// secretRefs are the Secrets knit Gateways named at the last build: a change of another
	// Secret changes nothing.
	secretRefs atomic.Pointer[map[translate.SecretRef]bool]

	mu sync.Mutex
	// dirty are the Services whose EndpointSlices, or the pods those name, changed since the
	// last build.
	dirty map[types.NamespacedName]struct{}
	// podServices are, per pod (namespace/name), the Services whose EndpointSlices name it;
	// servicePods is the reverse, to replace a Service's entries when its slices change.
	podServices map[string]map[types.NamespacedName]struct{}
	servicePods map[types.NamespacedName][]string
}

// watch subscribes to every kind the translation reads. Gateway API route kinds whose CRDs are
// not installed are skipped with a log line (Services still get their default routes).
func (b *builder) watch(ctx context.Context) error {
	structural := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { b.structural.Store(true); b.poke() },
		UpdateFunc: func(any, any) { b.structural.Store(true); b.poke() },
		DeleteFunc: func(any) { b.structural.Store(true); b.poke() },
	}
	endpointSlices := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.sliceChanged(obj) },
		UpdateFunc: func(old, obj any) { b.sliceChanged(old, obj) },
		DeleteFunc: func(obj any) { b.sliceChanged(obj) },
	}
	pods := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.podChanged(nil, obj) },
		UpdateFunc: func(old, obj any) { b.podChanged(old, obj) },
		DeleteFunc: func(obj any) { b.podChanged(nil, obj) },
	}
	kinds := []struct {
		obj      client.Object
		optional *bool
		handler  toolscache.ResourceEventHandler
	}{
		{&corev1.Service{}, nil, structural}, {&discoveryv1.EndpointSlice{}, nil, endpointSlices}, {&corev1.Pod{}, nil, pods},
		{&gwv1.HTTPRoute{}, &b.httpRoutes, structural}, {&gwv1.GRPCRoute{}, &b.grpcRoutes, structural},
		{&gwv1.Gateway{}, &b.gateways, structural}, {&gwv1.GatewayClass{}, &b.gatewayClasses, structural},
		{&gwv1.ReferenceGrant{}, &b.referenceGrants, structural},
		// Namespace labels decide which Gateway listeners (allowedRoutes from Selector) take a route.
		{&corev1.Namespace{}, nil, namespaceLabels(structural)},
		// Certificates of Gateways' HTTPS listeners.
		{&corev1.Secret{}, nil, b.referencedSecrets(structural)},
	}
	b.structural.Store(true)
	for _, k := range kinds {
		inf, err := b.informers.GetInformer(ctx, k.obj)
		if k.optional != nil && meta.IsNoMatchError(err) {
			b.log.Info("Gateway API kind not installed: its routes are ignored until the control plane restarts", "kind", fmt.Sprintf("%T", k.obj))
			continue
		}
		if err != nil {
			return fmt.Errorf("xds: watching %T: %w", k.obj, err)
		}
		if k.optional != nil {
			*k.optional = true
		}
		if _, err := inf.AddEventHandler(k.handler); err != nil {
			return fmt.Errorf("xds: watching %T: %w", k.obj, err)
		}
	}
	if !b.informers.WaitForCacheSync(ctx) {
		return fmt.Errorf("xds: the informer cache did not sync")
	}
	// The first translation is published before the server answers any proxy: a proxy that
	// connects early must not be told that the mesh is empty.
	if err := b.build(ctx); err != nil {
		b.log.Error(err, "translating the mesh; retrying")
		b.poke()
	}
	return nil
}

// namespaceLabels passes on namespace events that change labels (or add or remove a namespace):
// nothing else of a namespace feeds the translation.
func namespaceLabels(next toolscache.ResourceEventHandlerFuncs) toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: next.AddFunc,
		UpdateFunc: func(old, obj any) {
			o, ok1 := old.(*corev1.Namespace)
			n, ok2 := obj.(*corev1.Namespace)
			if ok1 && ok2 && reflect.DeepEqual(o.Labels, n.Labels) {
				return
			}
			next.UpdateFunc(old, obj)
		},
		DeleteFunc: next.DeleteFunc,
	}
}

// referencedSecrets passes on events of the Secrets knit Gateways name (or of all, before the
// first build).
func (b *builder) referencedSecrets(next toolscache.ResourceEventHandlerFuncs) toolscache.ResourceEventHandlerFuncs {
	named := func(obj any) bool {
		s, ok := unwrap(obj).(*corev1.Secret)
		refs := b.secretRefs.Load()
		return !ok || refs == nil || (*refs)[translate.NewSecretRef(s.Namespace, s.Name)]
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if named(obj) {
				next.AddFunc(obj)
			}
		},
		UpdateFunc: func(old, obj any) {
			if named(obj) {
				next.UpdateFunc(old, obj)
			}
		},
		DeleteFunc: func(obj any) {
			if named(obj) {
				next.DeleteFunc(obj)
			}
		},
	}
}

// unwrap returns the object of an informer event, also of a delete the informer missed.
func unwrap(obj any) any {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}

// sliceChanged marks the Services of EndpointSlices (before and after an update) for an
// endpoint build. A slice that names no Service feeds no translation.
func (b *builder) sliceChanged(objs ...any) {
	marked := false
	b.mu.Lock()
	for _, obj := range objs {
		s, ok := unwrap(obj).(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
			continue
		}
		b.markLocked(types.NamespacedName{Namespace: s.Namespace, Name: s.Labels[discoveryv1.LabelServiceName]})
		marked = true
	}
	b.mu.Unlock()
	if marked {
		b.poke()
	}
}

// podChanged marks the Services whose EndpointSlices name a pod. Updates that change nothing
// the translation reads (the cache keeps only that, plus labels and resourceVersion) are
// ignored, as are pods behind no Service's endpoints.
func (b *builder) podChanged(old, obj any) {
	p, ok := unwrap(obj).(*corev1.Pod)
	if !ok {
		return
	}
	if o, ok := old.(*corev1.Pod); ok && reflect.DeepEqual(o.Spec, p.Spec) && reflect.DeepEqual(o.Annotations, p.Annotations) {
		return
	}
	b.mu.Lock()
	svcs := b.podServices[p.Namespace+"/"+p.Name]
	for key := range svcs {
		b.markLocked(key)
	}
	b.mu.Unlock()
	if len(svcs) > 0 {
		b.poke()
	}
}

func (b *builder) markLocked(key types.NamespacedName) {
	if b.dirty == nil {
		b.dirty = map[types.NamespacedName]struct{}{}
	}
	b.dirty[key] = struct{}{}
}

// takeDirty returns the Services marked since the last call, in order, and forgets them.
func (b *builder) takeDirty() []types.NamespacedName {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]types.NamespacedName, 0, len(b.dirty))
	for k := range b.dirty {
		out = append(out, k)
	}
	b.dirty = nil
	slices.SortFunc(out, func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// remark marks Services again after a failed build.
func (b *builder) remark(keys []types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range keys {
		b.markLocked(k)
	}
}

// setPodsLocked records the pods a Service's EndpointSlices name, replacing what it named before.
func (b *builder) setPodsLocked(svc types.NamespacedName, pods []string) {
	for _, pod := range b.servicePods[svc] {
		if set := b.podServices[pod]; set != nil {
			delete(set, svc)
			if len(set) == 0 {
				delete(b.podServices, pod)
			}
		}
	}
	if len(pods) == 0 {
		delete(b.servicePods, svc)
		return
	}
	b.servicePods[svc] = pods
	for _, pod := range pods {
		set := b.podServices[pod]
		if set == nil {
			set = map[types.NamespacedName]struct{}{}
			b.podServices[pod] = set
		}
		set[svc] = struct{}{}
	}
}

// indexPods records, for every Service, the pods its EndpointSlices name. It runs before the
// pods are read, so that a pod that changes after the read marks its Services again.
func (b *builder) indexPods(eps []discoveryv1.EndpointSlice) {
	byService := map[types.NamespacedName][]string{}
	for i := range eps {
		s := &eps[i]
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			key := types.NamespacedName{Namespace: s.Namespace, Name: name}
			byService[key] = append(byService[key], translate.EndpointPods(s)...)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.podServices = map[string]map[types.NamespacedName]struct{}{}
	b.servicePods = map[types.NamespacedName][]string{}
	for svc, pods := range byService {
		b.setPodsLocked(svc, pods)
	}
}

func (b *builder) poke() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// maxDelay bounds how long a stream of changes can hold a push back.
const maxDelayFactor = 10

// run waits for a change, then for the debounce period (restarted by each further change, up
// to ten periods), then translates and publishes once.
func (b *builder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.trigger:
		}
		deadline := time.NewTimer(b.debounce * maxDelayFactor)
		quiet := time.NewTimer(b.debounce)
	wait:
		for {
			select {
			case <-ctx.Done():
				deadline.Stop()
				quiet.Stop()
				return
			case <-b.trigger:
				quiet.Reset(b.debounce)
			case <-quiet.C:
				break wait
			case <-deadline.C:
				break wait
			}
		}
		deadline.Stop()
		quiet.Stop()
		if err := b.build(ctx); err != nil {
			b.log.Error(err, "translating the mesh; retrying on the next change or in a second")
			time.AfterFunc(time.Second, b.poke)
		}
	}
}

// build translates what changed and publishes it: the whole mesh after a change of Services or
// routes (and the first time), else only the ClusterLoadAssignments of the marked Services.
func (b *builder) build(ctx context.Context) error {
	if !b.structural.Load() && b.pub.hasModel() {
		return b.buildEndpoints(ctx)
	}
	return b.buildAll(ctx)
}

// buildAll reads the cache, translates the whole mesh, publishes and writes route status.
func (b *builder) buildAll(ctx context.Context) error {
	b.structural.Store(false)
	// Endpoint changes up to here are part of this translation.
	b.takeDirty()
	in := translate.Inputs{TrustDomain: b.trustDomain}
	var svcs corev1.ServiceList
	var eps discoveryv1.EndpointSliceList
	var pods corev1.PodList
	var hrs gwv1.HTTPRouteList
	var grs gwv1.GRPCRouteList
	var rgs gwv1.ReferenceGrantList
	var nss corev1.NamespaceList
	lists := []struct {
		list client.ObjectList
		on   bool
	}{{&svcs, true}, {&eps, true}, {&pods, true}, {&hrs, b.httpRoutes}, {&grs, b.grpcRoutes}, {&rgs, b.referenceGrants}, {&nss, true}}
	for _, l := range lists {
		if !l.on {
			continue
		}
		if l.list == &pods {
			b.indexPods(eps.Items)
		}
		if err := b.reader.List(ctx, l.list); err != nil {
			b.structural.Store(true)
			return fmt.Errorf("listing %T: %w", l.list, err)
		}
	}
	in.Services, in.EndpointSlices, in.Pods, in.HTTPRoutes, in.GRPCRoutes = svcs.Items, eps.Items, pods.Items, hrs.Items, grs.Items
	in.ReferenceGrants = rgs.Items
	in.NamespaceLabels = make(map[string]map[string]string, len(nss.Items))
	for _, ns := range nss.Items {
		in.NamespaceLabels[ns.Name] = ns.Labels
	}
	gateways, err := b.knitGateways(ctx)
	if err != nil {
		b.structural.Store(true)
		return err
	}
	in.Gateways = gateways
	refs := translate.ReferencedSecrets(gateways)
	b.secretRefs.Store(&refs)
	for ref := range refs { // only these: the cache holds every TLS Secret
		var s corev1.Secret
		if err := b.reader.Get(ctx, types.NamespacedName{Namespace: ref.Namespace(), Name: ref.Name()}, &s); client.IgnoreNotFound(err) != nil {
			b.structural.Store(true)
			return fmt.Errorf("reading Secret %s/%s: %w", ref.Namespace(), ref.Name(), err)
		} else if err == nil {
			in.Secrets = append(in.Secrets, s)
		}
	}
	slices.SortFunc(in.Secrets, func(a, b corev1.Secret) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	m := translate.Translate(in)
	b.metrics.builds.Inc()
	b.metrics.translatedServices.Add(float64(len(svcs.Items)))
	for _, p := range m.Problems {
		b.log.Info("translation problem", "problem", p)
	}
	b.pub.publish(ctx, m)
	if b.status != nil {
		err := writeRouteStatus(ctx, b.log, b.status, in, m.Status)
		if cerr := writeCertificateVerdicts(ctx, b.log, b.status, gateways, m.CertificateVerdicts); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// buildEndpoints rebuilds the ClusterLoadAssignments of the marked Services from their
// EndpointSlices and the pods those name, and publishes the ones that changed. Clusters,
// listeners, routes and route status do not depend on endpoints and stay as they are.
func (b *builder) buildEndpoints(ctx context.Context) error {
	dirty := b.takeDirty()
	if len(dirty) == 0 {
		return nil
	}
	var clas []*endpointv3.ClusterLoadAssignment
	translated := 0
	for i, key := range dirty {
		c, ok, err := b.loadAssignments(ctx, key)
		if err != nil {
			b.remark(dirty[i:])
			return err
		}
		if !ok {
			continue
		}
		translated++
		clas = append(clas, c...)
	}
	b.metrics.builds.Inc()
	b.metrics.translatedServices.Add(float64(translated))
	b.pub.publishEndpoints(clas)
	return nil
}

// loadAssignments translates one Service's endpoints; ok is false when there is nothing to
// translate (the Service is gone: its deletion is a structural change) or when the result
// would differ from a whole translation's (a port's assignment failed), which is then asked for.
func (b *builder) loadAssignments(ctx context.Context, key types.NamespacedName) (clas []*endpointv3.ClusterLoadAssignment, ok bool, err error) {
	var svc corev1.Service
	if err := b.reader.Get(ctx, key, &svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading Service %s: %w", key, err)
	}
	var eps discoveryv1.EndpointSliceList
	if err := b.reader.List(ctx, &eps, client.InNamespace(key.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: key.Name}); err != nil {
		return nil, false, fmt.Errorf("listing the EndpointSlices of %s: %w", key, err)
	}
	owned := make([]*discoveryv1.EndpointSlice, len(eps.Items))
	var names []string
	for i := range eps.Items {
		owned[i] = &eps.Items[i]
		names = append(names, translate.EndpointPods(owned[i])...)
	}
	b.mu.Lock()
	b.setPodsLocked(key, names)
	b.mu.Unlock()
	pods := make([]corev1.Pod, 0, len(names))
	for _, name := range names {
		ns, n, _ := strings.Cut(name, "/")
		var pod corev1.Pod
		if err := b.reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: n}, &pod); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, false, fmt.Errorf("reading pod %s: %w", name, err)
		}
		pods = append(pods, pod)
	}
	clas, problems := translate.LoadAssignments(b.trustDomain, &svc, owned, pods)
	if len(problems) > 0 {
		for _, p := range problems {
			b.log.Info("translation problem", "problem", p)
		}
		// A whole translation leaves the port's cluster out as well.
		b.structural.Store(true)
		b.poke()
		return nil, false, nil
	}
	return clas, true, nil
}
