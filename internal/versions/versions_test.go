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

package versions

import (
	"errors"
	"strings"
	"testing"
)

func TestDefaultTable(t *testing.T) {
	if len(Default.Supported()) == 0 {
		t.Fatal("the embedded table supports no version")
	}
	for _, v := range Default.Supported() {
		if _, err := Default.Lookup(v); err != nil {
			t.Errorf("Lookup(%s): %v", v, err)
		}
	}
}

func TestLookupAndUpgrade(t *testing.T) {
	table, err := Parse([]byte(`
versions:
- {version: v1.0.0, controlPlaneImage: cp:1, proxyImage: p:1}
- {version: v1.1.0, controlPlaneImage: cp:2, proxyImage: p:2, upgradeFrom: [v1.0.0]}
- {version: v1.2.0, controlPlaneImage: cp:3, proxyImage: p:3, upgradeFrom: [v1.1.0]}
- {version: v0.9.0, controlPlaneImage: cp:0, proxyImage: p:0, endOfLife: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to string
		wantErr        string
	}{
		{"fresh install", "", "v1.0.0", ""},
		{"same version", "v1.1.0", "v1.1.0", ""},
		{"listed path", "v1.0.0", "v1.1.0", ""},
		{"rollback to the previous release", "v1.1.0", "v1.0.0", ""},
		{"downgrade past the previous release", "v1.2.0", "v1.0.0", "a downgrade may only go back to the release the running one was upgraded from (v1.1.0)"},
		{"skipping a minor", "v1.0.0", "v1.2.0", "upgrade to v1.1.0 first"},
		{"unknown target", "v1.0.0", "v2.0.0", "not a release this operator knows; supported versions: v1.0.0, v1.1.0, v1.2.0"},
		{"end of life", "", "v0.9.0", "v0.9.0 is end of life"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := table.CheckUpgrade(tt.from, tt.to)
			if tt.from == "" && err == nil {
				_, err = table.Lookup(tt.to)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	var unsupported *UnsupportedError
	if _, err := table.Lookup("v9.9.9"); !errors.As(err, &unsupported) {
		t.Fatalf("Lookup of an unknown version: want *UnsupportedError, got %v", err)
	}
}

func TestParseRejectsBadTables(t *testing.T) {
	for name, raw := range map[string]string{
		"missing image": `versions: [{version: v1.0.0, proxyImage: p}]`,
		"duplicate":     `versions: [{version: v1.0.0, controlPlaneImage: c, proxyImage: p}, {version: v1.0.0, controlPlaneImage: c, proxyImage: p}]`,
		"unknown from":  `versions: [{version: v1.0.0, controlPlaneImage: c, proxyImage: p, upgradeFrom: [v0.1.0]}]`,
		"unknown field": `versions: [{version: v1.0.0, controlPlaneImage: c, proxyImage: p, image: x}]`,
		"skips a minor": `versions: [{version: v1.0.0, controlPlaneImage: c, proxyImage: p}, {version: v1.2.0, controlPlaneImage: c, proxyImage: p, upgradeFrom: [v1.0.0]}]`,
		"backwards":     `versions: [{version: v1.1.0, controlPlaneImage: c, proxyImage: p}, {version: v1.0.0, controlPlaneImage: c, proxyImage: p, upgradeFrom: [v1.1.0]}]`,
	} {
		if _, err := Parse([]byte(raw)); err == nil {
			t.Errorf("%s: Parse accepted %s", name, raw)
		}
	}
}

func TestMinorsBehind(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"v0.1.0", "v0.2.0", 1}, {"v0.1.0", "v0.3.5", 2}, {"v0.2.0", "v0.1.0", 0}, {"v0.2.1", "v0.2.0", 0},
		{"v0.9.0", "v1.0.0", 1 << 20}, {"dev", "v0.1.0", 0},
	} {
		if got := MinorsBehind(tt.a, tt.b); got != tt.want {
			t.Errorf("MinorsBehind(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
