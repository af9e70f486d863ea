// Command images packs static binaries into minimal single-layer container images with
// go-containerregistry, without Docker or a registry, and reads the image references from the
// one place the manifests use: the kustomize Component config/images/kustomization.yaml.
//
//	images refs   -component FILE                 prints NAME=REFERENCE per image (NAME upper-cased, - as _)
//	images mesh   -versions FILE                  prints "proxy REF" / "controlplane REF" per supported mesh version
//	images pack   -ref REF -binary FILE -out TAR [-entrypoint /name] [-user UID:GID] [-add SRC=/DST]... [-path DIRS]
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
	var adds addFlags
	fs.Var(&adds, "add", "SRC=/DST: another file for the image (repeatable)")
	_ = fs.Parse(args)
	if *ref == "" || *bin == "" || *out == "" {
		return fmt.Errorf("pack needs -ref, -binary and -out")
	}
	if *entry == "" {
		*entry = "/" + path.Base(*bin)
	}
	tag, err := name.NewTag(*ref, name.StrictValidation)
	if err != nil {
		return err
	}
	files := []layerFile{{name: *entry, src: *bin, mode: 0o755}}
	for _, a := range adds {
		st, err := os.Stat(a.src)
		if err != nil {
			return err
		}
		files = append(files, layerFile{name: a.dst, src: a.src, mode: int64(st.Mode().Perm())})
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
	cf.Config.Entrypoint = []string{*entry}
	cf.Config.User = *user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=" + *pathEnv, "HOME=/tmp"}
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

// addFlags collects -add SRC=/DST.
type addFlags []struct{ src, dst string }

func (a *addFlags) String() string { return fmt.Sprint(*a) }

func (a *addFlags) Set(v string) error {
	src, dst, ok := strings.Cut(v, "=")
	if !ok || src == "" || !strings.HasPrefix(dst, "/") || path.Clean(dst) != dst || dst == "/" {
		return fmt.Errorf("-add %q: want SRC=/absolute/clean/path", v)
	}
	*a = append(*a, struct{ src, dst string }{src, dst})
	return nil
}

// layerFile is one regular file of the image: its absolute path in the image, where to read
// it, and its mode.
type layerFile struct {
	name, src string
	mode      int64
}

func layer(files []layerFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := []string{"tmp/"}
	seen := map[string]bool{"tmp/": true}
	for _, f := range files {
		for d := path.Dir(strings.TrimPrefix(f.name, "/")); d != "." && d != "/"; d = path.Dir(d) {
			if !seen[d+"/"] {
				seen[d+"/"] = true
				dirs = append(dirs, d+"/")
			}
		}
	}
	// Parents before children, whatever order the files came in.
	sort.Strings(dirs)
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		content, err := os.ReadFile(f.src)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.name, "/"), Mode: f.mode, Size: int64(len(content)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
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
