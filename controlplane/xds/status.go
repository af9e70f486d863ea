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
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/controlplane/translate"
)

// writeRouteStatus brings the parent statuses knit owns (controllerName
// translate.ControllerName) on every HTTPRoute and GRPCRoute in line with the translation,
// leaving other controllers' entries alone and writing only routes whose status changes.
func writeRouteStatus(ctx context.Context, log logr.Logger, c client.Client, in translate.Inputs, desired []translate.RouteStatus) error {
	want := make(map[translate.RouteRef][]gwv1.RouteParentStatus, len(desired))
	for _, d := range desired {
		want[d.Ref] = d.Parents
	}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	var errs []error
	for i := range in.HTTPRoutes {
		r := &in.HTTPRoutes[i]
		ref := translate.RouteRef{Kind: translate.KindHTTPRoute, Namespace: r.Namespace, Name: r.Name}
		parents, changed := mergeParents(r.Status.Parents, want[ref], now)
		if !changed {
			continue
		}
		u := r.DeepCopy()
		u.Status.Parents = parents
		errs = append(errs, updateStatus(ctx, log, c, u, ref))
	}
	for i := range in.GRPCRoutes {
		r := &in.GRPCRoutes[i]
		ref := translate.RouteRef{Kind: translate.KindGRPCRoute, Namespace: r.Namespace, Name: r.Name}
		parents, changed := mergeParents(r.Status.Parents, want[ref], now)
		if !changed {
			continue
		}
		u := r.DeepCopy()
		u.Status.Parents = parents
		errs = append(errs, updateStatus(ctx, log, c, u, ref))
	}
	return errors.Join(errs...)
}

func updateStatus(ctx context.Context, log logr.Logger, c client.Client, obj client.Object, ref translate.RouteRef) error {
	err := c.Status().Update(ctx, obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		// Another replica or a user changed it; the change event brings another pass.
		log.V(1).Info("route status conflict, retrying", "route", ref.String())
		return fmt.Errorf("route status of %s: %w", ref, err)
	case err != nil:
		return fmt.Errorf("writing the status of %s: %w", ref, err)
	}
	log.V(1).Info("route status written", "route", ref.String())
	return nil
}

// mergeParents replaces knit's parent statuses with the desired ones, keeping each condition's
// LastTransitionTime when its status did not change, and says whether anything changed.
func mergeParents(current, desired []gwv1.RouteParentStatus, now metav1.Time) ([]gwv1.RouteParentStatus, bool) {
	var out []gwv1.RouteParentStatus
	for _, p := range current {
		if !ownParent(p) {
			out = append(out, p)
		}
	}
	for _, d := range desired {
		var conds []metav1.Condition
		for _, p := range current {
			if ownParent(p) && equality.Semantic.DeepEqual(p.ParentRef, d.ParentRef) {
				conds = append(conds, p.Conditions...)
			}
		}
		keep := map[string]bool{}
		for _, c := range d.Conditions {
			c.LastTransitionTime = now
			meta.SetStatusCondition(&conds, c)
			keep[c.Type] = true
		}
		for _, c := range append([]metav1.Condition(nil), conds...) {
			if !keep[c.Type] {
				meta.RemoveStatusCondition(&conds, c.Type)
			}
		}
		out = append(out, gwv1.RouteParentStatus{ParentRef: d.ParentRef, ControllerName: d.ControllerName, Conditions: conds})
	}
	if len(out) > maxParents {
		out = out[:maxParents]
	}
	return out, !equality.Semantic.DeepEqual(current, out) && !(len(current) == 0 && len(out) == 0)
}

// maxParents is the CRD's bound on status.parents.
const maxParents = 32
