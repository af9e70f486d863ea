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

// Package versions is the operator's table of mesh releases: which exist, their images, and the
// legal upgrade paths between them.
package versions

import (
	_ "embed"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Release is one mesh release.
type Release struct {
	Version           string   `json:"version"`
	ControlPlaneImage string   `json:"controlPlaneImage"`
	ProxyImage        string   `json:"proxyImage"`
	EndOfLife         bool     `json:"endOfLife,omitempty"`
	UpgradeFrom       []string `json:"upgradeFrom,omitempty"`
}

// Table is a set of releases.
type Table struct {
	Versions []Release `json:"versions"`
}

//go:embed versions.yaml
var embedded []byte

// Default is the table built into this operator.
var Default = mustParse(embedded)

func mustParse(raw []byte) Table {
	t, err := Parse(raw)
	if err != nil {
		panic(fmt.Sprintf("embedded versions.yaml: %v", err))
	}
	return t
}

// Parse reads and checks a table.
func Parse(raw []byte) (Table, error) {
	var t Table
	if err := yaml.UnmarshalStrict(raw, &t); err != nil {
		return Table{}, err
	}
	seen := map[string]bool{}
	for i, r := range t.Versions {
		if r.Version == "" || r.ControlPlaneImage == "" || r.ProxyImage == "" {
			return Table{}, fmt.Errorf("versions[%d]: version, controlPlaneImage and proxyImage are required", i)
		}
		if seen[r.Version] {
			return Table{}, fmt.Errorf("versions[%d]: %s listed twice", i, r.Version)
		}
		seen[r.Version] = true
	}
	for _, r := range t.Versions {
		for _, from := range r.UpgradeFrom {
			if !seen[from] {
				return Table{}, fmt.Errorf("%s: upgradeFrom names unknown version %s", r.Version, from)
			}
			if err := oneMinorStep(from, r.Version); err != nil {
				return Table{}, fmt.Errorf("%s: upgradeFrom %s: %w", r.Version, from, err)
			}
		}
	}
	return t, nil
}

// Supported lists the versions that may be installed, in table order.
func (t Table) Supported() []string {
	var out []string
	for _, r := range t.Versions {
		if !r.EndOfLife {
			out = append(out, r.Version)
		}
	}
	return out
}

// UnsupportedError says why a version cannot run, naming what can.
type UnsupportedError struct {
	Version   string
	EndOfLife bool
	Supported []string
}

func (e *UnsupportedError) Error() string {
	what := "is not a release this operator knows"
	if e.EndOfLife {
		what = "is end of life"
	}
	return fmt.Sprintf("mesh version %s %s; supported versions: %s", e.Version, what, strings.Join(e.Supported, ", "))
}

// Lookup returns the release for a version that may be installed.
func (t Table) Lookup(version string) (Release, error) {
	for _, r := range t.Versions {
		if r.Version == version {
			if r.EndOfLife {
				return Release{}, &UnsupportedError{Version: version, EndOfLife: true, Supported: t.Supported()}
			}
			return r, nil
		}
	}
	return Release{}, &UnsupportedError{Version: version, Supported: t.Supported()}
}

// CheckUpgrade returns an error unless moving from one version to another is legal: staying put
// always is; an upgrade when the target lists the source in upgradeFrom; a downgrade only to a
// release the source lists in upgradeFrom (the previous release: a rollback).
func (t Table) CheckUpgrade(from, to string) error {
	if from == "" || from == to {
		return nil
	}
	target, err := t.Lookup(to)
	if err != nil {
		return err
	}
	if slices.Contains(target.UpgradeFrom, from) {
		return nil
	}
	for _, r := range t.Versions {
		if r.Version == from && slices.Contains(r.UpgradeFrom, to) {
			return nil // rollback to the release the running one was upgraded from
		}
	}
	next := t.upgradesFrom(from)
	var back []string
	for _, r := range t.Versions {
		if r.Version == from {
			back = r.UpgradeFrom
		}
	}
	switch {
	case MinorsBehind(to, from) > 0:
		return fmt.Errorf("mesh version %s is older than the running %s: a downgrade may only go back to the release "+
			"the running one was upgraded from (%s), as a rollback", to, from, strings.Join(back, ", "))
	case len(next) > 0:
		return fmt.Errorf("mesh version %s cannot be reached from the running %s in one step: upgrade to %s first "+
			"(one minor release at a time; a downgrade only back to the release the running one came from)",
			to, from, strings.Join(next, " or "))
	case len(target.UpgradeFrom) == 0:
		return fmt.Errorf("mesh version %s cannot be upgraded to from %s: it is installed fresh only", to, from)
	}
	return fmt.Errorf("mesh version %s can be upgraded to only from %s, not from %s",
		to, strings.Join(target.UpgradeFrom, ", "), from)
}

// upgradesFrom lists the supported releases that name version in upgradeFrom.
func (t Table) upgradesFrom(version string) []string {
	var out []string
	for _, r := range t.Versions {
		if !r.EndOfLife && slices.Contains(r.UpgradeFrom, version) {
			out = append(out, r.Version)
		}
	}
	return out
}

// Semver is the major, minor and patch of a release such as v0.2.0 (a -prerelease is ignored).
type Semver struct{ Major, Minor, Patch int }

// ParseSemver reads v<major>.<minor>.<patch>[-prerelease].
func ParseSemver(v string) (Semver, error) {
	rest, ok := strings.CutPrefix(v, "v")
	rest, _, _ = strings.Cut(rest, "-")
	parts := strings.Split(rest, ".")
	if !ok || len(parts) != 3 {
		return Semver{}, fmt.Errorf("%q is not a release such as v0.1.0", v)
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 {
			return Semver{}, fmt.Errorf("%q is not a release such as v0.1.0", v)
		}
		n[i] = x
	}
	return Semver{n[0], n[1], n[2]}, nil
}

// MinorsBehind says how many minor releases a is behind b (0 when a is not older, or the majors
// differ by a major release: then a large number).
func MinorsBehind(a, b string) int {
	va, errA := ParseSemver(a)
	vb, errB := ParseSemver(b)
	switch {
	case errA != nil || errB != nil:
		return 0
	case va.Major < vb.Major:
		return 1 << 20
	case va.Major == vb.Major && va.Minor < vb.Minor:
		return vb.Minor - va.Minor
	}
	return 0
}

// oneMinorStep refuses an upgrade path that skips a minor release or goes backwards.
func oneMinorStep(from, to string) error {
	vf, err := ParseSemver(from)
	if err != nil {
		return err
	}
	vt, err := ParseSemver(to)
	if err != nil {
		return err
	}
	switch {
	case vf.Major != vt.Major:
		return fmt.Errorf("an upgrade path may not cross a major release")
	case vt.Minor < vf.Minor || (vt.Minor == vf.Minor && vt.Patch <= vf.Patch):
		return fmt.Errorf("an upgrade path goes to a later release")
	case vt.Minor > vf.Minor+1:
		return fmt.Errorf("an upgrade path may not skip a minor release")
	}
	return nil
}
