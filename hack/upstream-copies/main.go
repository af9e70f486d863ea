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

// Command upstream-copies fails when a file of this repository shares a run of more than
// -max-shared lines with a file of an upstream source tree (a module directory from the Go module
// cache). hack/check-upstream-copies.sh runs it against the pinned versions of the projects knit
// builds on; see there for which.
//
// Lines are compared after folding white space and dropping comment markers. Lines that say
// nothing of their own are passed over on both sides (see significant): blank lines, lone
// punctuation, package and import lines, the Apache licence header, YAML document separators.
// A run found in more than -common places upstream counts as generic (a convention, not a
// copy) and is not reported.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

type upstreamList []string

func (u *upstreamList) String() string     { return strings.Join(*u, ",") }
func (u *upstreamList) Set(v string) error { *u = append(*u, v); return nil }

func main() {
	var (
		repo      = flag.String("repo", ".", "the repository (its git-tracked files are checked)")
		maxShared = flag.Int("max-shared", 6, "the longest run of shared lines allowed")
		common    = flag.Int("common", 8, "a run found in more upstream places than this is generic")
		upstreams upstreamList
		modules   upstreamList
		goMods    upstreamList
	)
	flag.Var(&upstreams, "upstream", "NAME=DIR of an upstream source tree (repeatable)")
	flag.Var(&modules, "module", "PATH@VERSION of a Go module whose source is an upstream tree (repeatable)")
	flag.Var(&goMods, "requirements-of", "a go.mod file whose direct requirements are upstream trees (repeatable)")
	flag.Parse()
	required, err := directRequirements(goMods)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream-copies:", err)
		os.Exit(2)
	}
	dirs, err := moduleDirs(append(required, modules...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream-copies:", err)
		os.Exit(2)
	}
	upstreams = append(upstreams, dirs...)
	if len(upstreams) == 0 {
		fmt.Fprintln(os.Stderr, "upstream-copies: give at least one -module PATH@VERSION or -upstream NAME=DIR")
		os.Exit(2)
	}
	found, err := check(os.Stdout, *repo, upstreams, *maxShared, *common)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream-copies:", err)
		os.Exit(2)
	}
	if found > 0 {
		os.Exit(1)
	}
}

// directRequirements returns the requirements the go.mod files list as direct, as PATH@VERSION,
// once each. It reads the files only (go mod edit), so no go.sum is touched.
func directRequirements(goMods []string) ([]string, error) {
	seen := map[string]bool{}
	var mods []string
	for _, f := range goMods {
		out, err := exec.Command("go", "mod", "edit", "-json", f).Output()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		var m struct {
			Require []struct {
				Path, Version string
				Indirect      bool
			}
		}
		if err := json.Unmarshal(out, &m); err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		for _, r := range m.Require {
			if mod := r.Path + "@" + r.Version; !r.Indirect && !seen[mod] {
				seen[mod] = true
				mods = append(mods, mod)
			}
		}
	}
	return mods, nil
}

// moduleDirs downloads the modules (a no-op when they are in the module cache) and returns
// them as NAME=DIR, with one `go mod download` for all. It runs outside any module, so that no
// go.mod or go.sum of the repository changes.
func moduleDirs(modules []string) ([]string, error) {
	if len(modules) == 0 {
		return nil, nil
	}
	cmd := exec.Command("go", append([]string{"mod", "download", "-json"}, modules...)...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", strings.Join(modules, " "), err)
	}
	var dirs []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading go mod download's output: %w", err)
		}
		if m.Error != "" || m.Dir == "" {
			return nil, fmt.Errorf("module %s@%s: not in the module cache: %s", m.Path, m.Version, m.Error)
		}
		dirs = append(dirs, m.Path+"@"+m.Version+"="+m.Dir)
	}
	return dirs, nil
}

// check prints every run of more than maxShared lines that a tracked file of repo shares with
// an upstream tree, and returns how many there are.
func check(w io.Writer, repo string, upstreams []string, maxShared, common int) (int, error) {
	files, err := trackedFiles(repo)
	if err != nil {
		return 0, err
	}
	idx := newIndex(maxShared + 1)
	for _, f := range files {
		if err := idx.addRepoFile(repo, f); err != nil {
			return 0, err
		}
	}
	read := 0
	for _, u := range upstreams {
		name, dir, ok := strings.Cut(u, "=")
		if !ok {
			return 0, fmt.Errorf("-upstream %q is not NAME=DIR", u)
		}
		n, err := idx.scanUpstream(name, dir)
		if err != nil {
			return 0, err
		}
		_, _ = fmt.Fprintf(w, "upstream-copies: %s: %d files read (%s)\n", name, n, dir)
		read += n
	}
	found := idx.report(w, common)
	_, _ = fmt.Fprintf(w, "upstream-copies: %d repository files against %d upstream files: %d runs of more than %d shared lines\n",
		len(idx.repoFiles), read, found, maxShared)
	return found, nil
}

// trackedFiles lists the repository's files that are written by hand in a language upstream
// projects also use; generated files are left to their generators.
func trackedFiles(repo string) ([]string, error) {
	out, err := exec.Command("git", "-C", repo, "ls-files", "-z").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the repository's files: %w", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if f != "" && checked(f) && !generated(f) {
			files = append(files, f)
		}
	}
	return files, nil
}

var sourceExt = map[string]bool{
	".go": true, ".sh": true, ".bash": true, ".py": true, ".mk": true, ".tpl": true,
	".yaml": true, ".yml": true, ".proto": true, ".c": true, ".h": true, ".rs": true,
	".js": true, ".ts": true,
}

// checked reports whether a file is source or build text (not data, not prose).
func checked(path string) bool {
	base := filepath.Base(path)
	return sourceExt[filepath.Ext(path)] || base == "Makefile" || base == "Dockerfile" ||
		(filepath.Ext(path) == "" && strings.HasPrefix(filepath.ToSlash(path), ".ci/"))
}

func generated(path string) bool {
	p := filepath.ToSlash(path)
	return strings.HasPrefix(filepath.Base(p), "zz_generated") || strings.HasPrefix(p, "config/crd/bases/") ||
		strings.HasPrefix(p, "config/rbac/role.yaml") ||
		strings.HasPrefix(p, "bundle/") // make bundle's output from config/ (hack/verify-bundle.sh checks it)
}

type line struct {
	no   int // 1-based line number in the file
	text string
}

var (
	space        = regexp.MustCompile(`\s+`)
	punctuation  = regexp.MustCompile(`^[{}()\[\],;:.-]*$`)
	importSpec   = regexp.MustCompile(`^(import \(|import |package [\w.]+$|(?:[\w.]+ )?"[^"]+"$)`)
	commentStart = regexp.MustCompile(`^(//+|#+|/\*+|\*+/?)\s?`)
	copyright    = regexp.MustCompile(`^Copyright( \(c\))? [0-9]{4}`)
)

// licenceLines are the lines of the Apache-2.0 header every file of knit and of most upstreams
// carries; they are the same everywhere by design.
var licenceLines = map[string]bool{}

func init() {
	for _, l := range strings.Split(`Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at
http://www.apache.org/licenses/LICENSE-2.0
Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.`, "\n") {
		licenceLines[l] = true
	}
}

// normalise folds white space and drops a leading comment marker.
func normalise(s string) string {
	s = strings.TrimSpace(space.ReplaceAllString(s, " "))
	return strings.TrimSpace(commentStart.ReplaceAllString(s, ""))
}

// significant reports whether a normalised line carries anything of its own.
func significant(s string) bool {
	switch {
	case s == "", s == "---", punctuation.MatchString(s), importSpec.MatchString(s):
		return false
	case licenceLines[s], copyright.MatchString(s):
		return false
	}
	return true
}

// significantLines reads r into its significant normalised lines.
func significantLines(r io.Reader) ([]line, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var lines []line
	for n := 1; sc.Scan(); n++ {
		if s := normalise(sc.Text()); significant(s) {
			lines = append(lines, line{no: n, text: s})
		}
	}
	return lines, sc.Err()
}

// index holds every window of k consecutive significant lines of the repository's files.
type index struct {
	k         int
	repoFiles []repoFile
	windows   map[uint64][]place // window hash -> where it starts in the repository
	hits      []hit
	upstream  map[uint64]int // window hash -> how many upstream places have it
}

type repoFile struct {
	path  string
	lines []line
}

type place struct{ file, at int }

type hit struct {
	repo                 place
	upstreamName, upPath string
	upLines              []line
	upAt                 int
	hash                 uint64
}

func newIndex(k int) *index {
	return &index{k: k, windows: map[uint64][]place{}, upstream: map[uint64]int{}}
}

func (x *index) addRepoFile(root, path string) error {
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	lines, err := significantLines(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	x.repoFiles = append(x.repoFiles, repoFile{path: path, lines: lines})
	f := len(x.repoFiles) - 1
	for i, h := range windowHashes(lines, x.k) {
		x.windows[h] = append(x.windows[h], place{file: f, at: i})
	}
	return nil
}

// windowHashes returns, for each start i, a hash of lines[i:i+k].
func windowHashes(lines []line, k int) []uint64 {
	if len(lines) < k {
		return nil
	}
	lh := make([]uint64, len(lines))
	for i, l := range lines {
		h := fnv.New64a()
		_, _ = h.Write([]byte(l.text))
		lh[i] = h.Sum64()
	}
	out := make([]uint64, 0, len(lines)-k+1)
	for i := 0; i+k <= len(lines); i++ {
		var h uint64 = 1469598103934665603
		for _, v := range lh[i : i+k] {
			h = (h ^ v) * 1099511628211
		}
		out = append(out, h)
	}
	return out
}

const maxUpstreamFile = 2 << 20

// scanUpstream reads every source file under dir and records the windows it shares with the
// repository. It returns the number of files read.
func (x *index) scanUpstream(name, dir string) (int, error) {
	read := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !checked(path) {
			return nil
		}
		info, err := d.Info()
		if err != nil || info.Size() > maxUpstreamFile {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		lines, err := significantLines(f)
		_ = f.Close()
		if err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return nil // minified or data; not source a person writes
			}
			return fmt.Errorf("reading %s: %w", path, err)
		}
		read++
		rel, _ := filepath.Rel(dir, path)
		for i, h := range windowHashes(lines, x.k) {
			places, ok := x.windows[h]
			if !ok {
				continue
			}
			x.upstream[h]++
			for _, p := range places {
				if sameWindow(x.repoFiles[p.file].lines[p.at:], lines[i:], x.k) {
					x.hits = append(x.hits, hit{repo: p, upstreamName: name, upPath: rel, upLines: lines, upAt: i, hash: h})
				}
			}
		}
		return nil
	})
	if err != nil {
		return read, fmt.Errorf("reading upstream %s: %w", name, err)
	}
	return read, nil
}

func sameWindow(a, b []line, k int) bool {
	for i := range k {
		if a[i].text != b[i].text {
			return false
		}
	}
	return true
}

// report merges hits that continue one another into runs and prints each run not deemed
// generic. It returns how many it printed.
func (x *index) report(w io.Writer, common int) int {
	type key struct {
		file     int
		upstream string
		diagonal int
	}
	runs := map[key][]hit{}
	for _, h := range x.hits {
		if x.upstream[h.hash] > common {
			continue
		}
		k := key{h.repo.file, h.upstreamName + "/" + h.upPath, h.repo.at - h.upAt}
		runs[k] = append(runs[k], h)
	}
	keys := make([]key, 0, len(runs))
	for k := range runs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := strings.Compare(x.repoFiles[a.file].path, x.repoFiles[b.file].path); c != 0 {
			return c
		}
		if c := strings.Compare(a.upstream, b.upstream); c != 0 {
			return c
		}
		return a.diagonal - b.diagonal
	})
	found := 0
	for _, k := range keys {
		hs := runs[k]
		slices.SortFunc(hs, func(a, b hit) int { return a.repo.at - b.repo.at })
		start := 0
		for i := 1; i <= len(hs); i++ {
			if i < len(hs) && hs[i].repo.at <= hs[i-1].repo.at+1 {
				continue
			}
			first, last := hs[start], hs[i-1]
			rl := x.repoFiles[k.file].lines
			n := last.repo.at - first.repo.at + x.k
			_, _ = fmt.Fprintf(w, "%s:%d-%d ~ %s:%d-%d (%d shared lines)\n",
				x.repoFiles[k.file].path, rl[first.repo.at].no, rl[last.repo.at+x.k-1].no,
				k.upstream, first.upLines[first.upAt].no, last.upLines[last.upAt+x.k-1].no, n)
			found++
			start = i
		}
	}
	return found
}
