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
	"flag"
	"testing"
	"time"
)

func parseIdentityFlags(t *testing.T, args ...string) *identityFlags {
	t.Helper()
	var f identityFlags
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f
}

func TestWorkloadCertificatesLiveAsTheMeshSaysUnlessTheTestDurationIsSet(t *testing.T) {
	for name, tc := range map[string]struct {
		args                  []string
		duration, renewBefore time.Duration
	}{
		"the Mesh's settings": {[]string{"--workload-cert-duration=2h", "--workload-cert-renew-before=30m"}, 2 * time.Hour, 30 * time.Minute},
		"test duration, renewal at the Mesh's fraction": {
			[]string{"--workload-cert-duration=2h", "--workload-cert-renew-before=30m", "--test-workload-cert-duration=80s"}, 80 * time.Second, 20 * time.Second},
		"test duration with the defaults (a third)": {[]string{"--test-workload-cert-duration=90s"}, 90 * time.Second, 30 * time.Second},
	} {
		d, r, err := parseIdentityFlags(t, tc.args...).lifetime()
		if err != nil || d != tc.duration || r != tc.renewBefore {
			t.Errorf("%s: lifetime %s, renew %s before expiry (%v); want %s and %s", name, d, r, err, tc.duration, tc.renewBefore)
		}
	}
	if _, _, err := parseIdentityFlags(t, "--test-workload-cert-duration=-1m").lifetime(); err == nil {
		t.Error("a negative test duration is accepted")
	}
}
