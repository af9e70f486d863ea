// Command images packs static binaries into minimal single-layer container images with
// go-containerregistry, without Docker or a registry, and reads the image references from the
// one place the manifests use: the kustomize Component config/images/kustomization.yaml.
//
//	images refs   -component FILE                 prints NAME=REFERENCE per image (NAME upper-cased, - as _)
//	images mesh   -versions FILE                  prints "proxy REF" / "controlplane REF" per supported mesh version
//	images pack   -ref REF -binary FILE -out TAR [-entrypoint /name] [-user UID:GID] [-path DIRS]
//	              [-add SRC=/DST]... [-label KEY=VALUE]...   (-add alone: an image of files, e.g. an OLM bundle)
//	images stamp  -imported DIR < manifests > manifests
//
// stamp copies multi-document YAML and gives each Deployment, StatefulSet and DaemonSet pod
// template the annotation knit.dev/images: a checksum of what `make images` imported for the
// images it runs (DIR/<ref with / and : as _>). Local images keep their tag when rebuilt (:dev),
// so this is what rolls a workload whose image changed, and only then.
//
// The mesh's own images (control plane, proxy) are named per mesh version by the operator's
// internal/versions/versions.yaml; `mesh` lists those of the versions that are not end of life.
//
// pack writes a docker-archive tarball (`ctr images import` reads it). The layer holds the binary
// at /<name>, each -add file at its /DST with its own file mode, and an empty /tmp; every
// timestamp is zero, so the same files give the same digest. -path sets the image's PATH (the
// conformance suite's echo image runs `client` by name).
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: images refs|pack ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "refs":
		err = refs(os.Args[2:])
	case "mesh":
		err = mesh(os.Args[2:])
	case "pack":
		err = pack(os.Args[2:])
	case "stamp":
		err = stamp(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

type component struct {
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

func refs(args []string) error {
	fs := flag.NewFlagSet("refs", flag.ExitOnError)
	file := fs.String("component", "config/images/kustomization.yaml", "kustomize file with an images: list")
	_ = fs.Parse(args)
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	var c component
	if err := yaml.UnmarshalStrict(data, &c, yaml.DisallowUnknownFields); err != nil {
		// Other kustomize fields (apiVersion, kind) are fine: only images matter here.
		if err := yaml.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("%s: %w", *file, err)
		}
	}
	if len(c.Images) == 0 {
		return fmt.Errorf("%s: no images", *file)
	}
	for _, im := range c.Images {
		if im.NewName == "" || im.NewTag == "" {
			return fmt.Errorf("%s: image %q needs newName and newTag", *file, im.Name)
		}
		ref := im.NewName + ":" + im.NewTag
		if _, err := name.NewTag(ref, name.StrictValidation); err != nil {
			return fmt.Errorf("%s: %q: %w", *file, ref, err)
		}
		key := strings.ToUpper(strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(path.Base(im.Name)))
		fmt.Printf("%s=%s\n", key, ref)
	}
	return nil
}

func mesh(args []string) error {
	fs := flag.NewFlagSet("mesh", flag.ExitOnError)
	file := fs.String("versions", "internal/versions/versions.yaml", "the operator's mesh versions file")
	_ = fs.Parse(args)
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	var v struct {
		Versions []struct {
			Version           string `json:"version"`
			EndOfLife         bool   `json:"endOfLife"`
			ControlPlaneImage string `json:"controlPlaneImage"`
			ProxyImage        string `json:"proxyImage"`
		} `json:"versions"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	for _, r := range v.Versions {
		if r.EndOfLife {
			continue
		}
		for kind, ref := range map[string]string{"proxy": r.ProxyImage, "controlplane": r.ControlPlaneImage} {
			if ref == "" {
				continue
			}
			if _, err := name.NewTag(ref, name.StrictValidation); err != nil {
				return fmt.Errorf("%s: %s %q: %w", *file, r.Version, ref, err)
			}
			fmt.Printf("%s %s\n", kind, ref)
		}
	}
	return nil
}

func pack(args []string) error {
	fs := flag.NewFlagSet("pack", flag.ExitOnError)
	ref := fs.String("ref", "", "image reference (registry/repo:tag)")
	bin := fs.String("binary", "", "static binary to put in the image")
	out := fs.String("out", "", "docker-archive tarball to write")
	entry := fs.String("entrypoint", "", "path of the binary in the image (default /<basename of -binary>)")
	user := fs.String("user", "65532:65532", "user the image runs as (numeric, so runAsNonRoot can check it)")
	pathEnv := fs.String("path", "/", "the image's PATH")
	adds := pairs{}
	labels := pairs{}
	fs.Var(&adds, "add", "SRC=/DST: a file or directory (recursively) to put into the image as well; repeatable")
	var cmdArgs pairs
	fs.Var(argFlag{&cmdArgs}, "arg", "an argument of the image's command (Cmd), after the entrypoint; repeatable")
	fs.Var(&labels, "label", "KEY=VALUE: an image label (e.g. OLM's bundle annotations); repeatable")
	_ = fs.Parse(args)
	if *ref == "" || *out == "" || (*bin == "" && len(adds) == 0) {
		return fmt.Errorf("pack needs -ref, -out, and -binary or -add")
	}
	if *entry == "" && *bin != "" {
		*entry = "/" + path.Base(*bin)
	}
	tag, err := name.NewTag(*ref, name.StrictValidation)
	if err != nil {
		return err
	}
	files := map[string]file{}
	if *bin != "" {
		content, err := os.ReadFile(*bin)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(*entry, "/")] = file{content, 0o755}
	}
	for _, a := range adds {
		if err := checkAdd(a[0], a[1]); err != nil {
			return err
		}
		if err := addTree(files, a[0], strings.TrimPrefix(a[1], "/")); err != nil {
			return err
		}
	}
	layerTar, err := layer(files)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	if *entry != "" {
		cf.Config.Entrypoint = []string{*entry}
	}
	for _, a := range cmdArgs {
		cf.Config.Cmd = append(cf.Config.Cmd, a[1])
	}
	cf.Config.User = *user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=" + *pathEnv, "HOME=/tmp"}
	if len(labels) > 0 {
		cf.Config.Labels = map[string]string{}
		for _, l := range labels {
			cf.Config.Labels[l[0]] = l[1]
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	tmp := *out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return err
	}
	if err := os.Rename(tmp, *out); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("%s %s\n", tag.String(), d)
	return nil
}

// checkAdd refuses an -add whose destination is not an absolute, clean path below /.
func checkAdd(src, dst string) error {
	if src == "" || !strings.HasPrefix(dst, "/") || path.Clean(dst) != dst || dst == "/" {
		return fmt.Errorf("-add %s=%s: want SRC=/absolute/clean/path", src, dst)
	}
	return nil
}

// file is one regular file of an image layer.
type file struct {
	content []byte
	mode    int64
}

// pairs collects repeatable KEY=VALUE flags in order.
type pairs [][2]string

func (p *pairs) String() string { return fmt.Sprint(*p) }

func (p *pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	*p = append(*p, [2]string{k, v})
	return nil
}

// argFlag collects repeatable plain values (into the value half of pairs).
type argFlag struct{ p *pairs }

func (a argFlag) String() string { return "" }

func (a argFlag) Set(s string) error {
	*a.p = append(*a.p, [2]string{"", s})
	return nil
}

// addTree adds the file src, or every regular file under the directory src, at dst.
func addTree(files map[string]file, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: only regular files and directories can be added", p)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		content, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[path.Clean(path.Join(dst, filepath.ToSlash(rel)))] = file{content, int64(info.Mode().Perm())}
		return nil
	})
}

// layer is a tarball of files, their parent directories and an empty /tmp, in a fixed order
// with zero timestamps: the same files give the same digest.
func layer(files map[string]file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	names := make([]string, 0, len(files))
	dirSet := map[string]bool{"tmp/": true}
	for f := range files {
		names = append(names, f)
		for d := path.Dir(f); d != "." && d != "/"; d = path.Dir(d) {
			dirSet[d+"/"] = true
		}
	}
	sort.Strings(names)
	dirs := []string{"tmp/"}
	for d := range dirSet {
		if d != "tmp/" {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs[1:])
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	for _, n := range names {
		f := files[n]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: f.mode, Size: int64(len(f.content)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func stamp(args []string) error {
	fs := flag.NewFlagSet("stamp", flag.ExitOnError)
	dir := fs.String("imported", "", "directory of import stamps, one file per image reference")
	_ = fs.Parse(args)
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	docs := strings.Split("\n"+string(in), "\n---\n")
	var out []string
	for _, d := range docs {
		if strings.TrimSpace(d) == "" {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(d), &obj); err != nil {
			return err
		}
		switch obj["kind"] {
		case "Deployment", "StatefulSet", "DaemonSet":
			tmpl := dig(obj, "spec", "template")
			podSpec := dig(tmpl, "spec")
			h := sha256.New()
			for _, key := range []string{"initContainers", "containers"} {
				list, _ := podSpec[key].([]any)
				for _, c := range list {
					img, _ := c.(map[string]any)["image"].(string)
					s, err := os.ReadFile(path.Join(*dir, strings.NewReplacer("/", "_", ":", "_").Replace(img)))
					if err != nil {
						s = []byte("not imported: " + img)
					}
					fmt.Fprintf(h, "%s %s\n", img, bytes.TrimSpace(s))
				}
			}
			meta := dig(tmpl, "metadata")
			ann, _ := meta["annotations"].(map[string]any)
			if ann == nil {
				ann = map[string]any{}
			}
			ann["knit.dev/images"] = hex.EncodeToString(h.Sum(nil))[:16]
			meta["annotations"] = ann
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		out = append(out, string(b))
	}
	_, err = os.Stdout.WriteString(strings.Join(out, "---\n"))
	return err
}

// dig returns the map at keys inside m, creating empty maps on the way.
func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	return m
}
