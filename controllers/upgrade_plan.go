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
	"fmt"
	"strings"
)

// upgradePlan is what one reconcile of a RevisionBased upgrade decides: which workloads have
// moved, which are being moved, which to restart now, and which cannot be.
type upgradePlan struct {
	target string
	// workloads are the meshed workloads that move (pinned ones excluded); moved run target.
	workloads, moved, pinned int
	// inProgress were restarted and are not available again yet: the current batch.
	inProgress []*workload
	// next is the batch to restart now (empty while a batch is in progress or when paused).
	next []*workload
	// blocked: not restarted because a PodDisruptionBudget allows no disruption (with its names).
	blocked []string
	// stuck: not restarted because their own rollout has not finished or has stalled.
	stuck []string
}

// pending says whether any workload still has to move.
func (p *upgradePlan) pending() bool { return p.moved < p.workloads }

// planUpgrade sorts the workloads (in a stable order) and picks the next batch. blockedBy names
// the PodDisruptionBudgets that allow a workload no disruption now.
func planUpgrade(ws []*workload, target string, batchSize int, paused bool, blockedBy func(*workload) []string) upgradePlan {
	p := upgradePlan{target: target}
	var candidates []*workload
	for _, w := range ws {
		onTarget := len(w.revisions) == 1 && w.revisions[target] > 0
		switch {
		case w.pinned:
			p.pinned++
			continue
		case onTarget && (w.rolledOut || w.restartedFor != target):
			// On the target; a rollout of its own (not ours) is none of the upgrade's business.
			p.workloads++
			p.moved++
			continue
		}
		p.workloads++
		switch {
		case w.stalled:
			p.stuck = append(p.stuck, fmt.Sprintf("%s (rollout past its progress deadline)", w))
		case !w.rolledOut && w.restartedFor != "":
			// Restarted by an upgrade (this one, or the one a rollback reverses): wait for it.
			p.inProgress = append(p.inProgress, w)
		case !w.rolledOut:
			p.stuck = append(p.stuck, fmt.Sprintf("%s (its own rollout has not finished)", w))
		default:
			candidates = append(candidates, w)
		}
	}
	for _, w := range candidates {
		if pdbs := blockedBy(w); len(pdbs) > 0 {
			p.blocked = append(p.blocked, fmt.Sprintf("%s (PodDisruptionBudget %s allows no disruption)", w, strings.Join(pdbs, ", ")))
			continue
		}
		if len(p.inProgress) == 0 && !paused && len(p.next) < batchSize {
			p.next = append(p.next, w)
		}
	}
	return p
}
