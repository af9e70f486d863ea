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

// Package conditions holds the small helpers the reconcilers share to set and summarise
// metav1.Conditions, so the Ready summary is computed in one place and never set by hand.
package conditions

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InitUnknown adds every type in types that is missing from conds as Unknown/reason, so a person
// sees at once which aspects the operator still has to determine.
func InitUnknown(conds *[]metav1.Condition, generation int64, reason string, types ...string) {
	for _, t := range types {
		if meta.FindStatusCondition(*conds, t) != nil {
			continue
		}
		meta.SetStatusCondition(conds, metav1.Condition{
			Type:               t,
			Status:             metav1.ConditionUnknown,
			ObservedGeneration: generation,
			Reason:             reason,
			Message:            fmt.Sprintf("%s has not been determined yet", t),
		})
	}
}

// MaxMessageLength bounds a condition message: enough to name every object at fault, short
// enough for kubectl describe. Longer messages are cut with an ellipsis.
const MaxMessageLength = 1024

// Set sets one condition; LastTransitionTime moves only when the status changes.
func Set(conds *[]metav1.Condition, generation int64, t string, status metav1.ConditionStatus, reason, messageFormat string, args ...any) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type:               t,
		Status:             status,
		ObservedGeneration: generation,
		Reason:             reason,
		Message:            bound(fmt.Sprintf(messageFormat, args...)),
	})
}

func bound(msg string) string {
	if len(msg) <= MaxMessageLength {
		return msg
	}
	const ellipsis = " …"
	cut := MaxMessageLength - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + ellipsis
}

// Requirement is a condition the summary depends on and the status it must have to be healthy.
// Most conditions are healthy when True; "negative" ones such as Degraded are healthy when False.
type Requirement struct {
	Type    string
	Healthy metav1.ConditionStatus
}

// Summary is the outcome of Summarize.
type Summary struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

// Summarize derives a summary condition from its requirements: False when any requirement is
// unhealthy, Unknown when none is unhealthy but some are not yet known, else True. The message
// names the requirements at fault with their own messages, so the summary alone tells a person
// what to look at; a message already said by an earlier requirement is not repeated (one
// missing dependency fails several conditions with the same words).
func Summarize(conds []metav1.Condition, okReason, notOKReason string, reqs ...Requirement) Summary {
	var bad, unknown []string
	var said []metav1.Condition
	for _, r := range reqs {
		c := meta.FindStatusCondition(conds, r.Type)
		switch {
		case c == nil || c.Status == metav1.ConditionUnknown:
			unknown = append(unknown, r.Type)
		case c.Status != r.Healthy:
			bad = append(bad, fmt.Sprintf("%s=%s (%s): %s", c.Type, c.Status, c.Reason, withoutRepeats(c.Message, said)))
			said = append(said, *c)
		}
	}
	switch {
	case len(bad) > 0:
		return Summary{metav1.ConditionFalse, notOKReason, strings.Join(bad, "; ")}
	case len(unknown) > 0:
		return Summary{metav1.ConditionUnknown, notOKReason, "waiting for " + strings.Join(unknown, ", ")}
	default:
		return Summary{metav1.ConditionTrue, okReason, "all conditions hold"}
	}
}

// minRepeat is the shortest message worth replacing by a reference: shorter ones read better
// said again than pointed at.
const minRepeat = 40

// withoutRepeats replaces, in msg, each message of an earlier condition by a reference to it.
// A message an earlier one already contains becomes a reference as a whole.
func withoutRepeats(msg string, earlier []metav1.Condition) string {
	for _, e := range earlier {
		if len(msg) >= minRepeat && strings.Contains(e.Message, msg) {
			return "(see " + e.Type + ")"
		}
		if len(e.Message) >= minRepeat {
			msg = strings.ReplaceAll(msg, e.Message, "(see "+e.Type+")")
		}
	}
	return msg
}
