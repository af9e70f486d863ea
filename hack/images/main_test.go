package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The echo image of the conformance suite needs several files at nested paths: every parent
// directory comes before what it holds, and each file keeps its own mode.
func TestLayerHoldsAddedFilesWithParentsFirstAndTheirModes(t *testing.T) {
	dir := t.TempDir()
	files := map[string]file{}
	add := func(name, src string, mode os.FileMode) {
		p := filepath.Join(dir, src)
		if err := os.WriteFile(p, []byte(src), mode); err != nil {
			t.Fatal(err)
		}
		if err := addTree(files, p, name); err != nil {
			t.Fatal(err)
		}
	}
	add("usr/local/bin/server", "server", 0o755)
	add("usr/local/bin/client", "client", 0o755)
	add("cert.key", "key", 0o644)
	data, err := layer(files)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name string
		mode int64
		body string
	}
	var got []entry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got = append(got, entry{h.Name, h.Mode, string(b)})
	}
	want := []entry{
		{"tmp/", 0o1777, ""}, {"usr/", 0o755, ""}, {"usr/local/", 0o755, ""}, {"usr/local/bin/", 0o755, ""},
		{"cert.key", 0o644, "key"}, {"usr/local/bin/client", 0o755, "client"}, {"usr/local/bin/server", 0o755, "server"},
	}
	if len(got) != len(want) {
		t.Fatalf("layer has %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestAddFlagRefusesRelativeOrUncleanDestinations(t *testing.T) {
	for _, v := range []string{"a", "a=b", "a=/x/../y", "=/x", "a=/"} {
		var a pairs
		if a.Set(v) != nil {
			continue // not even KEY=VALUE
		}
		if err := checkAdd(a[0][0], a[0][1]); err == nil {
			t.Errorf("-add %q accepted", v)
		}
	}
	if err := checkAdd("bin/client", "/usr/local/bin/client"); err != nil {
		t.Errorf("-add of a clean absolute path: %v", err)
	}
}
