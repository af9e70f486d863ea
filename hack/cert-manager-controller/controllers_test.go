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
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/cert-manager/cert-manager/pkg/controller"
)

func TestSelectControllers(t *testing.T) {
	available := []string{"issuers", "certificates-issuing", "certificaterequests-approver"}
	for _, tc := range []struct {
		spec    string
		want    []string
		wantErr string
	}{
		{spec: "*", want: []string{"certificaterequests-approver", "certificates-issuing", "issuers"}},
		{spec: "*,-certificaterequests-approver", want: []string{"certificates-issuing", "issuers"}},
		{spec: "-certificaterequests-approver,*", want: []string{"certificates-issuing", "issuers"}},
		{spec: "-certificaterequests-approver", want: []string{"certificates-issuing", "issuers"}},
		{spec: "issuers, certificates-issuing", want: []string{"certificates-issuing", "issuers"}},
		{spec: "issuers,-issuers", wantErr: "selects no controller"},
		{spec: "", wantErr: "selects no controller"},
		{spec: "*,certificaterequests-issuer-venafi", wantErr: `unknown controller "certificaterequests-issuer-venafi"`},
		{spec: "*,-no-such", wantErr: `unknown controller "no-such"`},
	} {
		got, err := selectControllers(tc.spec, available)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("selectControllers(%q) = %v, %v; want error containing %q", tc.spec, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("selectControllers(%q) = %v, %v; want %v", tc.spec, got, err, tc.want)
		}
	}
}

// The tests and the local cluster need exactly these; the registry is filled by the imports in
// controllers.go, so a dropped or added import shows here.
func TestBinaryRegistersTheControllersKnitNeeds(t *testing.T) {
	want := []string{
		"certificaterequests-approver",
		"certificaterequests-issuer-ca",
		"certificaterequests-issuer-selfsigned",
		"certificates-issuing",
		"certificates-key-manager",
		"certificates-readiness",
		"certificates-request-manager",
		"certificates-revision-manager",
		"certificates-trigger",
		"clusterissuers",
		"issuers",
	}
	if got := slices.Sorted(maps.Keys(controller.Known())); !slices.Equal(got, want) {
		t.Errorf("registered controllers = %v, want %v", got, want)
	}
}
