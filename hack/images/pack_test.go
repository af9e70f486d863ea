package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// An image of files (an OLM bundle: /manifests, /metadata and its labels) holds exactly those
// files, the labels and the command, and packing it again gives the same digest.
func TestPackAddsFilesLabelsAndCommandReproducibly(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"bundle/manifests/csv.yaml":        "kind: ClusterServiceVersion\n",
		"bundle/metadata/annotations.yaml": "annotations: {}\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	packOnce := func(out string) string {
		t.Helper()
		err := pack([]string{"-ref", "knit.local/test/bundle:v1", "-out", out,
			"-add", filepath.Join(dir, "bundle/manifests") + "=/manifests",
			"-add", filepath.Join(dir, "bundle/metadata") + "=/metadata",
			"-label", "operators.operatorframework.io.bundle.package.v1=knit", "-arg", "serve"})
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(out, nil)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Config.Labels["operators.operatorframework.io.bundle.package.v1"]; got != "knit" {
			t.Errorf("label = %q, want knit", got)
		}
		if !slices.Equal(cf.Config.Cmd, []string{"serve"}) {
			t.Errorf("cmd = %v, want [serve]", cf.Config.Cmd)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("layers: %v, %v", len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var files []string
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				files = append(files, h.Name)
			}
		}
		if want := []string{"manifests/csv.yaml", "metadata/annotations.yaml"}; !slices.Equal(files, want) {
			t.Errorf("files = %v, want %v", files, want)
		}
		return d.String()
	}
	first := packOnce(filepath.Join(t.TempDir(), "a.tar"))
	second := packOnce(filepath.Join(t.TempDir(), "b.tar"))
	if first != second {
		t.Errorf("digests differ between two packs of the same files: %s, %s", first, second)
	}
}
