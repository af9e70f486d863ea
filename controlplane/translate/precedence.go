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

package translate

import (
	"cmp"
	"time"
)

// Path match ranks: an exact path beats a regular expression, which beats a prefix.
const (
	rankPrefix = 1
	rankRegex  = 2
	rankExact  = 3
)

// precedence orders Envoy routes the way Gateway API orders HTTPRoute matches: exact path, then
// the longest prefix (regular expressions, which the spec leaves to implementations, rank between
// exact and prefix), then a method match, then more header matches, then more query parameter
// matches; ties go to the oldest route, then namespace/name, then rule and match order.
type precedence struct {
	pathRank, pathLen int
	method            bool
	headers, queries  int
	created           time.Time
	ns, name          string
	kind              string
	rule, match       int
}

func comparePrecedence(a, b precedence) int {
	if c := cmp.Or(
		-cmp.Compare(a.pathRank, b.pathRank),
		-cmp.Compare(a.pathLen, b.pathLen),
		-compareBool(a.method, b.method),
		-cmp.Compare(a.headers, b.headers),
		-cmp.Compare(a.queries, b.queries),
	); c != 0 {
		return c
	}
	return cmp.Or(
		a.created.Compare(b.created),
		cmp.Compare(a.ns, b.ns),
		cmp.Compare(a.name, b.name),
		cmp.Compare(a.kind, b.kind),
		cmp.Compare(a.rule, b.rule),
		cmp.Compare(a.match, b.match),
	)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
