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

package webhooks

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/knit-mesh/knit/webhooks/injection"
)

// NamespaceReader tells injection what it needs to know about a pod's namespace.
type NamespaceReader interface {
	Namespace(ctx context.Context, name string) (injection.Namespace, error)
}

// ClientNamespaces reads namespaces and their trust bundles as metadata, from Cache first. What
// Cache does not hold is read again from API, so a bundle written a moment ago is seen even
// before the cache's watch delivers it, and a pod is never refused for the cache's delay.
type ClientNamespaces struct {
	Cache, API client.Reader
}

var _ NamespaceReader = ClientNamespaces{}

// NamespaceMetadata and ConfigMapMetadata are the metadata-only kinds ClientNamespaces reads;
// a cache serving them needs to watch only these.
func NamespaceMetadata() *metav1.PartialObjectMetadata {
	return partial(corev1.SchemeGroupVersion.WithKind("Namespace"))
}

// ConfigMapMetadata: see NamespaceMetadata.
func ConfigMapMetadata() *metav1.PartialObjectMetadata {
	return partial(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
}

func partial(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(gvk)
	return obj
}

// Namespace reads the namespace's labels and whether it holds the trust bundle.
func (r ClientNamespaces) Namespace(ctx context.Context, name string) (injection.Namespace, error) {
	ns := NamespaceMetadata()
	if err := r.get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		return injection.Namespace{}, fmt.Errorf("reading Namespace %s: %w", name, err)
	}
	out := injection.Namespace{Name: name, Labels: ns.Labels, HasTrustBundle: true}
	bundle := ConfigMapMetadata()
	switch err := r.get(ctx, client.ObjectKey{Namespace: name, Name: injection.TrustBundleName}, bundle); {
	case apierrors.IsNotFound(err):
		out.HasTrustBundle = false
	case err != nil:
		return injection.Namespace{}, fmt.Errorf("reading ConfigMap %s/%s: %w", name, injection.TrustBundleName, err)
	}
	return out, nil
}

func (r ClientNamespaces) get(ctx context.Context, key client.ObjectKey, obj client.Object) error {
	err := r.Cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) && r.API != nil {
		err = r.API.Get(ctx, key, obj)
	}
	return err
}

// WatchNamespaces starts a metadata-only cache of namespaces and of the trust-bundle ConfigMaps
// (by name, nothing else), and returns the injection webhook's view of them once it has synced.
func WatchNamespaces(ctx context.Context, log logr.Logger, cfg *rest.Config) (NamespaceReader, error) {
	c, err := cache.New(cfg, cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			ConfigMapMetadata(): {Field: fields.OneTermEqualSelector("metadata.name", injection.TrustBundleName)},
		},
		ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the namespace cache: %w", err)
	}
	for _, obj := range []client.Object{NamespaceMetadata(), ConfigMapMetadata()} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("watching %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
		}
	}
	go func() {
		if err := c.Start(ctx); err != nil {
			log.Error(err, "namespace cache stopped")
		}
	}()
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("the namespace cache did not sync")
	}
	api, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("creating the API client: %w", err)
	}
	return ClientNamespaces{Cache: c, API: api}, nil
}
