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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const header = `/*
Copyright 2024 The cert-manager Authors.

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

package app

import (
	"context"
	"fmt"
)
`

// body returns n distinct statement lines, indented as given.
func body(indent string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%sstep%d := compute(%d, \"stage %d\")\n", indent, i, i*7, i)
	}
	return b.String()
}

// writeTree writes files (path -> content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// gitRepo makes a git repository with the files tracked.
func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, files)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dir
}

func runCheck(t *testing.T, repo string, upstream map[string]string) (int, string) {
	t.Helper()
	up := t.TempDir()
	writeTree(t, up, upstream)
	var out strings.Builder
	found, err := check(&out, repo, []string{"upstream=" + up}, 6, 8)
	if err != nil {
		t.Fatal(err)
	}
	return found, out.String()
}

func TestCopiedBlockOfSevenLinesIsReported(t *testing.T) {
	upstream := map[string]string{"cmd/app/controller.go": header + "\nfunc Run() {\n" + body("\t", 20) + "}\n"}
	// Re-indented and with the licence header, package and imports of another project: still a copy.
	repo := gitRepo(t, map[string]string{
		"hack/launcher/main.go": "package main\n\nfunc run() {\n    x := 1\n" + body("        ", 7) + "}\n",
	})
	found, out := runCheck(t, repo, upstream)
	if found != 1 || !strings.Contains(out, "hack/launcher/main.go:5-11 ~ upstream/cmd/app/controller.go") ||
		!strings.Contains(out, "(7 shared lines)") {
		t.Errorf("found %d, output:\n%s", found, out)
	}
}

func TestSixSharedLinesAndSharedBoilerplatePass(t *testing.T) {
	upstream := map[string]string{"cmd/app/controller.go": header + "\nfunc Run() {\n" + body("\t", 20) + "}\n"}
	repo := gitRepo(t, map[string]string{
		// Same licence header, package clause and imports, then six shared statements.
		"hack/launcher/main.go": header + "\nfunc run() {\n" + body("\t", 6) + "\tdone()\n}\n",
	})
	if found, out := runCheck(t, repo, upstream); found != 0 {
		t.Errorf("found %d, output:\n%s", found, out)
	}
}

func TestRunFoundAllOverUpstreamIsGeneric(t *testing.T) {
	upstream := map[string]string{}
	for i := range 9 {
		upstream[fmt.Sprintf("pkg/p%d/x.go", i)] = fmt.Sprintf("func f%d() {\n%s}\n", i, body("\t", 8))
	}
	repo := gitRepo(t, map[string]string{"main.go": "func g() {\n" + body("\t", 8) + "}\n"})
	if found, out := runCheck(t, repo, upstream); found != 0 {
		t.Errorf("found %d, output:\n%s", found, out)
	}
}

func TestGeneratedAndUntrackedFilesAreNotChecked(t *testing.T) {
	upstream := map[string]string{"a.go": body("", 10)}
	repo := gitRepo(t, map[string]string{"api/v1/zz_generated.deepcopy.go": body("", 10)})
	writeTree(t, repo, map[string]string{"untracked.go": body("", 10)})
	if found, out := runCheck(t, repo, upstream); found != 0 {
		t.Errorf("found %d, output:\n%s", found, out)
	}
}
