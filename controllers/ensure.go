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

package controllers

import (
	"context"
	"fmt"
	"maps"
	"reflect"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// ensure creates obj, or brings the live object in line with what sync writes into it, owned by
// owner. The write happens only when sync changed something, so a reconcile with nothing new
// makes no API write.
//
// The cache holds only objects with knit's labels. When one of knit's children lost its labels
// (a person stripped them), the cache misses it and the create fails with AlreadyExists: ensure
// then reads it from live (uncached), and if owner controls it, restores it. An object of that
// name that knit does not own is left alone and reported as a *NameTakenError.
func ensure(ctx context.Context, c client.Client, live client.Reader, scheme *runtime.Scheme, owner, obj client.Object, sync func()) error {
	mutate := func() error {
		sync()
		return controllerutil.SetControllerReference(owner, obj, scheme)
	}
	res, err := controllerutil.CreateOrUpdate(ctx, c, obj, mutate)
	if apierrors.IsAlreadyExists(err) && live != nil {
		res, err = controllerutil.OperationResultUpdated, adoptStripped(ctx, c, live, owner, obj, mutate)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", kindOf(obj, scheme), client.ObjectKeyFromObject(obj), err)
	}
	if res != controllerutil.OperationResultNone {
		log.FromContext(ctx).Info("object "+string(res), "kind", kindOf(obj, scheme), "object", client.ObjectKeyFromObject(obj))
	}
	return nil
}

// adoptStripped repairs a child of owner that the cache cannot see, or reports whose it is not.
func adoptStripped(ctx context.Context, c client.Client, live client.Reader, owner, obj client.Object, mutate func() error) error {
	key := client.ObjectKeyFromObject(obj)
	if err := live.Get(ctx, key, obj); err != nil {
		return err
	}
	if !metav1.IsControlledBy(obj, owner) {
		return &NameTakenError{Object: key, UID: obj.GetUID()}
	}
	if err := mutate(); err != nil {
		return err
	}
	return c.Update(ctx, obj)
}

// NameTakenError says an object knit needs to create exists already and is not knit's: a
// person's object of the same name, which knit does not touch.
type NameTakenError struct {
	Object client.ObjectKey
	UID    types.UID
}

func (e *NameTakenError) Error() string {
	return "an object of this name exists that knit did not make; knit leaves it alone: rename or delete it"
}

// syncTo sets *live to desired unless live already holds exactly what desired sets. Empty
// strings, nil pointers, slices and maps in desired are ignored (equality.Semantic.DeepDerivative),
// so values the API server defaulted there do not count as drift, while an edit to a field knit
// sets is reverted. Numbers and bools are always compared: desired must spell out defaults. A
// list desired sets must have its length too: DeepDerivative alone accepts a longer live list,
// so an item knit stopped asking for (a webhook, an argument) would stay.
func syncTo[T any](live *T, desired T) {
	if !equality.Semantic.DeepDerivative(desired, *live) || !sameListLengths(reflect.ValueOf(desired), reflect.ValueOf(*live)) {
		*live = desired
	}
}

// sameListLengths walks desired and live together and reports whether every non-empty list in
// desired has as many items as the live one. Unexported fields (inside resource.Quantity, say)
// are representation, not content, and are not walked.
func sameListLengths(desired, live reflect.Value) bool {
	if !desired.IsValid() || !live.IsValid() {
		return true
	}
	switch desired.Kind() {
	case reflect.Pointer, reflect.Interface:
		if desired.IsNil() || live.IsNil() {
			return true
		}
		return sameListLengths(desired.Elem(), live.Elem())
	case reflect.Struct:
		for i := range desired.NumField() {
			if desired.Type().Field(i).IsExported() && !sameListLengths(desired.Field(i), live.Field(i)) {
				return false
			}
		}
	case reflect.Slice:
		if desired.Len() == 0 {
			return true
		}
		if desired.Len() != live.Len() {
			return false
		}
		for i := range desired.Len() {
			if !sameListLengths(desired.Index(i), live.Index(i)) {
				return false
			}
		}
	case reflect.Map:
		for _, k := range desired.MapKeys() {
			if !sameListLengths(desired.MapIndex(k), live.MapIndex(k)) {
				return false
			}
		}
	}
	return true
}

// syncLabels adds or corrects the given labels, leaving others alone.
func syncLabels(obj client.Object, want map[string]string) {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	changed := false
	for k, v := range want {
		if labels[k] != v {
			labels[k] = v
			changed = true
		}
	}
	if changed {
		obj.SetLabels(labels)
	}
}

// withLabels returns base plus extra.
func withLabels(base map[string]string, extra map[string]string) map[string]string {
	out := maps.Clone(base)
	maps.Copy(out, extra)
	return out
}

func kindOf(obj client.Object, scheme *runtime.Scheme) string {
	if gvk, _, err := scheme.ObjectKinds(obj); err == nil && len(gvk) > 0 {
		return gvk[0].Kind
	}
	return fmt.Sprintf("%T", obj)
}
