package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// committed is the bundle `make bundle` wrote; hack/verify-bundle.sh checks it is not stale.
const committed = "../../bundle"

func TestCommittedBundlePassesEveryValidator(t *testing.T) {
	problems, err := Validate(committed)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// copyBundle copies the committed bundle into a temporary directory.
func copyBundle(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(committed, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(committed, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// edit replaces old (which must occur) with new in one file of the bundle.
func edit(t *testing.T, dir, file, old, new string) {
	t.Helper()
	p := filepath.Join(dir, file)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

const csvFileName = "manifests/knit.clusterserviceversion.yaml"

func TestBrokenBundlesFailWithClearMessages(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
		want   string
	}{{
		name:   "unknown installMode type",
		break_: func(t *testing.T, dir string) { edit(t, dir, csvFileName, "type: AllNamespaces", "type: AllNamespace") },
		want:   `installMode type "AllNamespace" is not one of OwnNamespace, SingleNamespace, MultiNamespace, AllNamespaces`,
	}, {
		name: "namespaced installMode supported",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, csvFileName, "supported: false\n    type: OwnNamespace", "supported: true\n    type: OwnNamespace")
		},
		want: "installMode OwnNamespace has supported=true; knit supports AllNamespaces only",
	}, {
		name: "owned CRD missing from the bundle",
		break_: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "manifests/mesh.knit.dev_meshrevisions.yaml")); err != nil {
				t.Fatal(err)
			}
		},
		want: "the CSV owns CRD meshrevisions.mesh.knit.dev but its manifest is not in the bundle",
	}, {
		name: "wrong media type",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, "metadata/annotations.yaml", "mediatype.v1: registry+v1", "mediatype.v1: plain+v0")
		},
		want: `operators.operatorframework.io.bundle.mediatype.v1 is "plain+v0", want "registry+v1"`,
	}, {
		name: "misspelt annotation key",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, "metadata/annotations.yaml", "bundle.channel.default.v1", "bundle.channels.default.v1")
		},
		want: "unknown key operators.operatorframework.io.bundle.channels.default.v1",
	}, {
		name: "default channel not among the channels",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, "metadata/annotations.yaml", "channel.default.v1: stable-v0", "channel.default.v1: stable")
		},
		want: `default channel "stable" is not one of the channels [stable-v0]`,
	}, {
		name: "package does not match the CSV",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, "metadata/annotations.yaml", "package.v1: knit", "package.v1: knit-operator")
		},
		want: `package "knit-operator" does not match the CSV name`,
	}, {
		name: "cert-manager dependency missing",
		break_: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "metadata/dependencies.yaml")); err != nil {
				t.Fatal(err)
			}
		},
		want: "metadata/dependencies.yaml: open",
	}, {
		name: "internal object not owned",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, csvFileName, `["meshrevisions.mesh.knit.dev"]`, `["meshrevision.mesh.knit.dev"]`)
		},
		want: "internal-objects names meshrevision.mesh.knit.dev, which the CSV does not own",
	}, {
		// A warning of operator-framework/api's validators counts as a failure.
		name: "unknown category (an OperatorHub warning)",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, csvFileName, "categories: Networking,Security", "categories: Networking,Mesh")
		},
		want: "Mesh",
	}, {
		name: "invalid capability level (an OperatorHub error)",
		break_: func(t *testing.T, dir string) {
			edit(t, dir, csvFileName, "capabilities: Basic Install", "capabilities: Basic")
		},
		want: "capabilities",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyBundle(t)
			tc.break_(t, dir)
			problems, err := Validate(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(problems) == 0 {
				t.Fatal("the broken bundle passed validation")
			}
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("no problem mentions %q; got:\n%s", tc.want, strings.Join(problems, "\n"))
		})
	}
}
