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
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(name), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	data, err := layer([]layerFile{
		{name: "/usr/local/bin/server", src: write("server", 0o755), mode: 0o755},
		{name: "/usr/local/bin/client", src: write("client", 0o755), mode: 0o755},
		{name: "/cert.key", src: write("key", 0o644), mode: 0o644},
	})
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
		{"usr/local/bin/server", 0o755, "server"}, {"usr/local/bin/client", 0o755, "client"}, {"cert.key", 0o644, "key"},
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
		var a addFlags
		if err := a.Set(v); err == nil {
			t.Errorf("-add %q accepted", v)
		}
	}
	var a addFlags
	if err := a.Set("bin/client=/usr/local/bin/client"); err != nil || a[0].dst != "/usr/local/bin/client" {
		t.Errorf("-add of a clean absolute path: %v %v", a, err)
	}
}
