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

package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	// Each cert-manager controller package adds itself to pkg/controller's registry when it is
	// imported, so this list is the whole set the binary can run: the Certificate pipeline, the
	// CA and self-signed signers for CertificateRequests, the (Cluster)Issuer status controllers,
	// and the approver that approves every CertificateRequest (switch it off with
	// --controllers=*,-certificaterequests-approver to approve from elsewhere).
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The issuer types the (Cluster)Issuer controllers can set up; others are reported by
	// cert-manager as unsupported on the issuer's status.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// selectControllers turns a --controllers value into the sorted names to run. The value is a
// comma-separated list: "*" means every name in available, "name" adds one and "-name" removes
// one (removals win, whatever the order); a list of removals alone starts from "*". A name
// this binary does not contain is an error rather than silently nothing.
func selectControllers(spec string, available []string) ([]string, error) {
	known := make(map[string]bool, len(available))
	for _, name := range available {
		known[name] = true
	}
	selected, removed := map[string]bool{}, map[string]bool{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		name, remove := strings.CutPrefix(item, "-")
		switch {
		case item == "":
			continue
		case item == "*":
			for _, n := range available {
				selected[n] = true
			}
		case !known[name]:
			return nil, fmt.Errorf("unknown controller %q in --controllers; this binary has: %s",
				name, strings.Join(slices.Sorted(slices.Values(available)), ", "))
		case remove:
			removed[name] = true
		default:
			selected[name] = true
		}
	}
	if len(selected) == 0 && len(removed) > 0 {
		for _, n := range available {
			selected[n] = true
		}
	}
	for name := range removed {
		delete(selected, name)
	}
	if len(selected) == 0 {
		return nil, fmt.Errorf("--controllers=%q selects no controller", spec)
	}
	return slices.Sorted(maps.Keys(selected)), nil
}
