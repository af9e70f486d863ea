package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"
	validator "github.com/operator-framework/api/pkg/validation/interfaces"
	"sigs.k8s.io/yaml"
)

// KubernetesVersion is the release the removed-API check judges the bundle against: the one the
// project builds and tests on (KUBERNETES_VERSION in hack/versions.env).
const KubernetesVersion = "1.37"

// validators are operator-framework/api's: the default bundle validators, OperatorHub's (v2,
// standard capabilities and categories), good practices, and removed APIs.
var validators = validator.Validators{}.
	WithValidators(validation.DefaultBundleValidators...).
	WithValidators(
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
	)

// Validate returns every problem of the bundle in dir, one readable line each: the findings of
// operator-framework/api's validators, warnings included, then knit's own checks.
func Validate(dir string) ([]string, error) {
	var problems []string
	problems = append(problems, checkAnnotations(dir)...)
	problems = append(problems, checkInstallModes(dir)...)
	problems = append(problems, checkDependencies(dir)...)
	b, err := manifests.GetBundleFromDir(dir)
	if err != nil {
		return append(problems, fmt.Sprintf("loading the bundle: %v", err)), nil
	}
	objs := append(b.ObjectsToValidate(), map[string]string{"k8s-version": KubernetesVersion})
	for _, r := range validators.Validate(objs...) {
		for _, e := range append(r.Errors, r.Warnings...) {
			problems = append(problems, describe(r, e))
		}
	}
	problems = append(problems, checkOwnedCRDs(dir, b)...)
	return problems, nil
}

func describe(r errors.ManifestResult, e errors.Error) string {
	s := fmt.Sprintf("%s: %s", strings.ToLower(string(e.Level)), e.Error())
	if r.Name != "" && !strings.Contains(s, r.Name) {
		s += " (" + r.Name + ")"
	}
	return s
}

// Knit's own checks of what the validators above let through.

var installModeTypes = []string{"OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces"}

// channelName: OperatorHub's advice (stable/fast/candidate, optionally -<suffix>), as
// GoodPractices warns; a DNS-label-like word.
var channelName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)

func checkAnnotations(dir string) []string {
	file := filepath.Join(dir, "metadata", "annotations.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return []string{fmt.Sprintf("metadata/annotations.yaml: %v", err)}
	}
	var doc struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return []string{fmt.Sprintf("metadata/annotations.yaml: %v", err)}
	}
	a := doc.Annotations
	var p []string
	want := BundleAnnotations(Options{})
	for _, k := range sortedKeys(want) {
		if _, ok := a[k]; !ok {
			p = append(p, fmt.Sprintf("metadata/annotations.yaml: missing key %s", k))
		}
	}
	for _, k := range sortedKeys(a) {
		if _, ok := want[k]; !ok {
			p = append(p, fmt.Sprintf("metadata/annotations.yaml: unknown key %s (a typo of one of %s?)", k, strings.Join(sortedKeys(want), ", ")))
		}
	}
	for k, v := range map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1": "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":  "metadata/",
	} {
		if got, ok := a[k]; ok && got != v {
			p = append(p, fmt.Sprintf("metadata/annotations.yaml: %s is %q, want %q", k, got, v))
		}
	}
	pkg := a["operators.operatorframework.io.bundle.package.v1"]
	if csv := csvName(dir); pkg != "" && csv != "" && !strings.HasPrefix(csv, pkg+".v") {
		p = append(p, fmt.Sprintf("metadata/annotations.yaml: package %q does not match the CSV name %q (<package>.v<version>)", pkg, csv))
	}
	channels := strings.Split(a["operators.operatorframework.io.bundle.channels.v1"], ",")
	for _, c := range channels {
		if !channelName.MatchString(c) {
			p = append(p, fmt.Sprintf("metadata/annotations.yaml: channel %q is not a valid channel name", c))
		}
	}
	if def, ok := a["operators.operatorframework.io.bundle.channel.default.v1"]; ok && !slices.Contains(channels, def) {
		p = append(p, fmt.Sprintf("metadata/annotations.yaml: default channel %q is not one of the channels %v", def, channels))
	}
	return p
}

// csvFile is the part of the CSV knit checks itself, read without the typed loader (which
// accepts any installMode type).
type csvFile struct {
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		InstallModes []struct {
			Type      string `json:"type"`
			Supported bool   `json:"supported"`
		} `json:"installModes"`
	} `json:"spec"`
}

func readCSV(dir string) (*csvFile, string, error) {
	matches, _ := filepath.Glob(filepath.Join(dir, "manifests", "*.clusterserviceversion.yaml"))
	if len(matches) != 1 {
		return nil, "", fmt.Errorf("manifests/: want exactly one *.clusterserviceversion.yaml, found %d", len(matches))
	}
	data, err := os.ReadFile(matches[0])
	if err != nil {
		return nil, "", err
	}
	var c csvFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, "", fmt.Errorf("%s: %w", filepath.Base(matches[0]), err)
	}
	return &c, filepath.Base(matches[0]), nil
}

func csvName(dir string) string {
	c, _, err := readCSV(dir)
	if err != nil {
		return ""
	}
	return c.Metadata.Name
}

// checkInstallModes: every type is one OLM knows, at most once, and knit supports exactly
// AllNamespaces (one operator per cluster watches every namespace: the mesh is cluster-wide).
func checkInstallModes(dir string) []string {
	c, file, err := readCSV(dir)
	if err != nil {
		return []string{err.Error()}
	}
	var p []string
	seen := map[string]bool{}
	for _, m := range c.Spec.InstallModes {
		if !slices.Contains(installModeTypes, m.Type) {
			p = append(p, fmt.Sprintf("%s: installMode type %q is not one of %s", file, m.Type, strings.Join(installModeTypes, ", ")))
			continue
		}
		if seen[m.Type] {
			p = append(p, fmt.Sprintf("%s: installMode %s is listed twice", file, m.Type))
		}
		seen[m.Type] = true
		if m.Supported != (m.Type == "AllNamespaces") {
			p = append(p, fmt.Sprintf("%s: installMode %s has supported=%t; knit supports AllNamespaces only", file, m.Type, m.Supported))
		}
	}
	if !seen["AllNamespaces"] {
		p = append(p, fmt.Sprintf("%s: installModes lack AllNamespaces", file))
	}
	return p
}

// checkDependencies: metadata/dependencies.yaml requires every cert-manager API knit creates.
func checkDependencies(dir string) []string {
	data, err := os.ReadFile(filepath.Join(dir, "metadata", "dependencies.yaml"))
	if err != nil {
		return []string{fmt.Sprintf("metadata/dependencies.yaml: %v (cert-manager must be a declared dependency)", err)}
	}
	var doc struct {
		Dependencies []struct {
			Type  string `json:"type"`
			Value struct{ Group, Kind, Version string }
		} `json:"dependencies"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []string{fmt.Sprintf("metadata/dependencies.yaml: %v", err)}
	}
	var p []string
	for _, kind := range CertManagerAPIs {
		if !slices.ContainsFunc(doc.Dependencies, func(d struct {
			Type  string `json:"type"`
			Value struct{ Group, Kind, Version string }
		}) bool {
			return d.Type == "olm.gvk" && d.Value.Group == "cert-manager.io" && d.Value.Kind == kind && d.Value.Version == "v1"
		}) {
			p = append(p, fmt.Sprintf("metadata/dependencies.yaml: no olm.gvk dependency on cert-manager.io/v1 %s", kind))
		}
	}
	return p
}

// checkOwnedCRDs: each owned CRD's manifest is in the bundle, and internal objects name owned CRDs.
func checkOwnedCRDs(dir string, b *manifests.Bundle) []string {
	var p []string
	if b.CSV == nil {
		return nil
	}
	inBundle := map[string]bool{}
	for _, c := range b.V1CRDs {
		inBundle[c.Name] = true
	}
	owned := map[string]bool{}
	for _, d := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		owned[d.Name] = true
		if !inBundle[d.Name] {
			p = append(p, fmt.Sprintf("manifests/: the CSV owns CRD %s but its manifest is not in the bundle", d.Name))
		}
	}
	if s, ok := b.CSV.Annotations["operators.operatorframework.io/internal-objects"]; ok {
		var names []string
		if err := yaml.Unmarshal([]byte(s), &names); err != nil {
			p = append(p, fmt.Sprintf("CSV annotation operators.operatorframework.io/internal-objects is not a JSON list: %v", err))
		}
		sort.Strings(names)
		for _, n := range names {
			if !owned[n] {
				p = append(p, fmt.Sprintf("CSV annotation operators.operatorframework.io/internal-objects names %s, which the CSV does not own", n))
			}
		}
	}
	return p
}
