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
	"slices"
	"testing"
)

func TestPlanUpgrade(t *testing.T) {
	const old, target = "default-v0-1-0", "default-v0-2-0"
	on := func(name, rev string) *workload {
		return &workload{kind: "deploy", namespace: "shop", name: name, revisions: map[string]int{rev: 2}, rolledOut: true}
	}
	with := func(w *workload, f func(*workload)) *workload { f(w); return w }
	noPDB := func(*workload) []string { return nil }
	names := func(ws []*workload) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.name)
		}
		return out
	}
	tests := []struct {
		name       string
		ws         []*workload
		batch      int
		paused     bool
		blockedBy  func(*workload) []string
		next, wait []string
		moved      int
		workloads  int
		pinned     int
		blocked    int
		stuck      int
	}{
		{name: "first batch of two", ws: []*workload{on("a", old), on("b", old), on("c", old)}, batch: 2,
			next: []string{"a", "b"}, workloads: 3},
		{name: "a batch in progress holds the next",
			ws: []*workload{
				with(on("a", old), func(w *workload) { w.revisions[target] = 1; w.rolledOut = false; w.restartedFor = target }),
				on("b", old)},
			batch: 2, wait: []string{"a"}, workloads: 2},
		{name: "a restarted workload on the target but not available yet is waited for",
			ws:    []*workload{with(on("a", target), func(w *workload) { w.rolledOut = false; w.restartedFor = target }), on("b", old)},
			batch: 1, wait: []string{"a"}, workloads: 2},
		{name: "moved ones count, the rest go", ws: []*workload{on("a", target), on("b", old)}, batch: 5,
			next: []string{"b"}, moved: 1, workloads: 2},
		{name: "paused starts no batch", ws: []*workload{on("a", old)}, batch: 5, paused: true, workloads: 1},
		{name: "pinned ones are not moved nor counted as workloads",
			ws: []*workload{with(on("a", old), func(w *workload) { w.pinned = true }), on("b", old)}, batch: 5,
			next: []string{"b"}, workloads: 1, pinned: 1},
		{name: "a PodDisruptionBudget that allows nothing blocks, the next one goes",
			ws: []*workload{on("a", old), on("b", old)}, batch: 1,
			blockedBy: func(w *workload) []string {
				if w.name == "a" {
					return []string{"a-pdb"}
				}
				return nil
			},
			next: []string{"b"}, workloads: 2, blocked: 1},
		{name: "a workload rolling out on its own is skipped as stuck",
			ws:    []*workload{with(on("a", old), func(w *workload) { w.rolledOut = false }), on("b", old)},
			batch: 2, next: []string{"b"}, workloads: 2, stuck: 1},
		{name: "a stalled restart does not hold the upgrade",
			ws:    []*workload{with(on("a", old), func(w *workload) { w.rolledOut = false; w.stalled = true; w.restartedFor = target }), on("b", old)},
			batch: 1, next: []string{"b"}, workloads: 2, stuck: 1},
		{name: "rolling out on its own on the target counts as moved",
			ws:    []*workload{with(on("a", target), func(w *workload) { w.rolledOut = false })},
			batch: 1, moved: 1, workloads: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blockedBy := tt.blockedBy
			if blockedBy == nil {
				blockedBy = noPDB
			}
			p := planUpgrade(tt.ws, target, tt.batch, tt.paused, blockedBy)
			if got := names(p.next); !slices.Equal(got, tt.next) {
				t.Errorf("next = %v, want %v", got, tt.next)
			}
			if got := names(p.inProgress); !slices.Equal(got, tt.wait) {
				t.Errorf("inProgress = %v, want %v", got, tt.wait)
			}
			if p.moved != tt.moved || p.workloads != tt.workloads || p.pinned != tt.pinned {
				t.Errorf("moved/workloads/pinned = %d/%d/%d, want %d/%d/%d", p.moved, p.workloads, p.pinned, tt.moved, tt.workloads, tt.pinned)
			}
			if len(p.blocked) != tt.blocked || len(p.stuck) != tt.stuck {
				t.Errorf("blocked %v, stuck %v; want %d and %d", p.blocked, p.stuck, tt.blocked, tt.stuck)
			}
		})
	}
}
