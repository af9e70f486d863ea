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
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// grants answers whether ReferenceGrants let a route of one namespace name a Service of another.
type grants []gwv1.ReferenceGrant

// allowService says whether a route of kind routeKind in namespace from may name Service name in
// namespace to: a ReferenceGrant in namespace to must list the route (group gateway.networking.k8s.io,
// its kind and namespace) among its from entries and the Service (group "", kind Service, and
// the name when the grant names one) among its to entries.
func (g grants) allowService(routeKind, from, to, name string) bool {
	return g.allow(routeKind, from, "Service", to, name)
}

// allowSecret says whether a Gateway in namespace from may name Secret name in namespace to
// among its listeners' certificateRefs, by the same rules (from: kind Gateway; to: kind Secret).
func (g grants) allowSecret(from, to, name string) bool {
	return g.allow("Gateway", from, "Secret", to, name)
}

// allow says whether a ReferenceGrant in namespace to lets a fromKind (of group
// gateway.networking.k8s.io) in namespace from refer to the core toKind name in namespace to.
func (g grants) allow(fromKind, from, toKind, to, name string) bool {
	for i := range g {
		rg := &g[i]
		if rg.Namespace != to {
			continue
		}
		fromOK := false
		for _, f := range rg.Spec.From {
			if string(f.Group) == gwv1.GroupName && string(f.Kind) == fromKind && string(f.Namespace) == from {
				fromOK = true
				break
			}
		}
		if !fromOK {
			continue
		}
		for _, t := range rg.Spec.To {
			if (t.Group == "" || t.Group == "core") && string(t.Kind) == toKind && (t.Name == nil || *t.Name == "" || string(*t.Name) == name) {
				return true
			}
		}
	}
	return false
}
