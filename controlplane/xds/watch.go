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
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
// large cluster's pods cost little memory.
func NewCache(cfg *rest.Config) (cache.Cache, error) {
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	return cache.New(cfg, cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Transform: stripPod},
		},
	})
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

// builder translates the cluster's state into snapshots, at most once per debounce period.
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
	// structural is set when something other than endpoints changed since the last build.
	structural atomic.Bool
}

// watch subscribes to every kind the translation reads. Gateway API route kinds whose CRDs are
// not installed are skipped with a log line (Services still get their default routes).
func (b *builder) watch(ctx context.Context) error {
	handler := func(structural bool) toolscache.ResourceEventHandlerFuncs {
		poke := func() {
			if structural {
				b.structural.Store(true)
			}
			b.poke()
		}
		return toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { poke() },
			UpdateFunc: func(any, any) { poke() },
			DeleteFunc: func(any) { poke() },
		}
	}
	// EndpointSlices and Pods change only endpoints; the rest changes clusters, listeners or routes.
	kinds := []struct {
		obj        client.Object
		optional   *bool
		structural bool
	}{
		{&corev1.Service{}, nil, true}, {&discoveryv1.EndpointSlice{}, nil, false}, {&corev1.Pod{}, nil, false},
		{&gwv1.HTTPRoute{}, &b.httpRoutes, true}, {&gwv1.GRPCRoute{}, &b.grpcRoutes, true},
		{&gwv1.Gateway{}, &b.gateways, true}, {&gwv1.GatewayClass{}, &b.gatewayClasses, true},
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
		if _, err := inf.AddEventHandler(handler(k.structural)); err != nil {
			return fmt.Errorf("xds: watching %T: %w", k.obj, err)
		}
	}
	if !b.informers.WaitForCacheSync(ctx) {
		return fmt.Errorf("xds: the informer cache did not sync")
	}
	b.poke()
	return nil
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

// build reads the cache, translates, publishes and writes route status.
func (b *builder) build(ctx context.Context) error {
	structural := b.structural.Swap(false)
	in := translate.Inputs{TrustDomain: b.trustDomain}
	var svcs corev1.ServiceList
	var eps discoveryv1.EndpointSliceList
	var pods corev1.PodList
	var hrs gwv1.HTTPRouteList
	var grs gwv1.GRPCRouteList
	lists := []struct {
		list client.ObjectList
		on   bool
	}{{&svcs, true}, {&eps, true}, {&pods, true}, {&hrs, b.httpRoutes}, {&grs, b.grpcRoutes}}
	for _, l := range lists {
		if !l.on {
			continue
		}
		if err := b.reader.List(ctx, l.list); err != nil {
			if structural {
				b.structural.Store(true)
			}
			return fmt.Errorf("listing %T: %w", l.list, err)
		}
	}
	in.Services, in.EndpointSlices, in.Pods, in.HTTPRoutes, in.GRPCRoutes = svcs.Items, eps.Items, pods.Items, hrs.Items, grs.Items
	gateways, err := b.knitGateways(ctx)
	if err != nil {
		b.structural.Store(true)
		return err
	}
	in.Gateways = gateways
	m := translate.Translate(in)
	b.metrics.builds.Inc()
	for _, p := range m.Problems {
		b.log.Info("translation problem", "problem", p)
	}
	b.pub.publish(ctx, m, structural)
	if b.status != nil {
		if err := writeRouteStatus(ctx, b.log, b.status, in, m.Status); err != nil {
			return err
		}
	}
	return nil
}
