// Command bundle makes and checks knit's OLM bundle (registry+v1), the part operator-sdk's
// `generate bundle` and `bundle validate` would do, with operator-framework/api as a library:
//
//	bundle generate -in FILE -out DIR -version V [-replaces NAME] [-skip-range RANGE]
//	                [-icon SVG] [-image REF=REF]... [-related NAME=REF]... [-channels C1,C2] [-default-channel C]
//	bundle validate DIR
//
// generate reads the kustomize output of config/manifests (the CSV base, the operator as
// config/default installs it, the samples) and writes DIR/manifests (the CSV, the CRDs, the
// extra objects) and DIR/metadata (annotations.yaml, dependencies.yaml). validate runs
// operator-framework/api's validators with warnings as errors, plus knit's own checks of what
// they miss (see validate.go). A module of its own so operator-framework's dependencies stay out
// of the project's go.mod.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bundle generate|validate ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "generate":
		err = generateCmd(os.Args[2:])
	case "validate":
		err = validateCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		os.Exit(1)
	}
}

// imageFlags collects -image PLACEHOLDER=REF pairs.
type imageFlags map[string]string

func (f imageFlags) String() string { return fmt.Sprint(map[string]string(f)) }

func (f imageFlags) Set(s string) error {
	from, to, ok := strings.Cut(s, "=")
	if !ok || from == "" || to == "" {
		return fmt.Errorf("want IMAGE=REFERENCE, got %q", s)
	}
	f[from] = to
	return nil
}

func generateCmd(args []string) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	opts := Options{Images: imageFlags{}, RelatedImages: imageFlags{}}
	in := fs.String("in", "-", "kustomize output of config/manifests (- for stdin)")
	out := fs.String("out", "bundle", "bundle directory to write (replaced)")
	icon := fs.String("icon", "", "SVG icon of the CSV")
	channels := fs.String("channels", "stable-v0", "comma-separated channels of the bundle")
	fs.StringVar(&opts.Package, "package", "knit", "OLM package name")
	fs.StringVar(&opts.Version, "version", "", "operator version (semver, no v)")
	fs.StringVar(&opts.Replaces, "replaces", "", "CSV name this release replaces in the channel")
	fs.StringVar(&opts.SkipRange, "skip-range", "", "olm.skipRange: versions this release upgrades from directly")
	fs.StringVar(&opts.DefaultChannel, "default-channel", "stable-v0", "default channel of the package")
	fs.BoolVar(&opts.NoDependencies, "no-dependencies", false, "write no metadata/dependencies.yaml (for cert-manager's own package)")
	fs.Var(imageFlags(opts.Images), "image", "IMAGE=REFERENCE: replace an image reference (e.g. with its digest); repeatable")
	fs.Var(imageFlags(opts.RelatedImages), "related", "NAME=REFERENCE: an image the operator deploys (relatedImages); repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts.Channels = strings.Split(*channels, ",")
	var data []byte
	var err error
	if *in == "-" {
		data, err = readAll(os.Stdin)
	} else {
		data, err = os.ReadFile(*in)
	}
	if err != nil {
		return fmt.Errorf("reading manifests: %w", err)
	}
	if *icon != "" {
		if opts.Icon, err = os.ReadFile(*icon); err != nil {
			return fmt.Errorf("reading icon: %w", err)
		}
	}
	b, err := Generate(data, opts)
	if err != nil {
		return err
	}
	return b.Write(*out)
}

func validateCmd(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: bundle validate DIR")
	}
	problems, err := Validate(args[0])
	if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %d problem(s)", args[0], len(problems))
	}
	fmt.Printf("%s: valid (operator-framework/api validators, warnings as errors, and knit's checks)\n", args[0])
	return nil
}
