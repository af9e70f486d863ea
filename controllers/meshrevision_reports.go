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
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// removeExpiredReports deletes the reports of control-plane pods that stopped renewing them
// (status.controlPlanes older than meshv1.ControlPlaneReportExpiry), so the list does not grow
// with every pod that ever ran. Each pod writes its own entry with server-side apply; the
// removal is a JSON patch that first tests the entry at each index is still that pod's, so it
// never takes over or drops another pod's entry. It returns when the next report expires.
func (r *MeshRevisionReconciler) removeExpiredReports(ctx context.Context, rev *meshv1.MeshRevision, now time.Time) (time.Duration, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value string `json:"value,omitempty"`
	}
	var ops []op
	var next time.Duration
	reports := rev.Status.ControlPlanes
	for i := len(reports) - 1; i >= 0; i-- { // from the end, so earlier indexes stay valid
		left := reports[i].LastUpdateTime.Add(meshv1.ControlPlaneReportExpiry).Sub(now)
		if left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		path := fmt.Sprintf("/status/controlPlanes/%d", i)
		ops = append(ops, op{Op: "test", Path: path + "/pod", Value: reports[i].Pod}, op{Op: "remove", Path: path})
	}
	if len(ops) == 0 {
		return next, nil
	}
	raw, err := json.Marshal(ops)
	if err != nil {
		return 0, err
	}
	if err := r.Status().Patch(ctx, rev, client.RawPatch(types.JSONPatchType, raw)); client.IgnoreNotFound(err) != nil {
		// A test that failed means a pod wrote meanwhile: the write brings another reconcile.
		return 0, fmt.Errorf("removing expired control-plane reports from MeshRevision %s: %w", rev.Name, err)
	}
	return next, nil
}
