package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/blang/semver/v4"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Options are what a release adds to config/manifests.
type Options struct {
	Package        string
	Version        string // semver without a leading v
	Replaces       string // CSV name of the release this one replaces
	SkipRange      string
	Channels       []string
	DefaultChannel string
	Icon           []byte            // SVG
	Images         map[string]string // reference in config -> reference in the bundle
	RelatedImages  map[string]string // name -> reference of images the operator deploys
	// NoDependencies leaves out metadata/dependencies.yaml (cert-manager's own test package).
	NoDependencies bool
}

// Bundle is a registry+v1 bundle: file name -> content, under manifests/ and metadata/.
type Bundle map[string][]byte

// CertManagerAPIs are the cert-manager kinds the operator creates; the bundle requires a
// provider of each (metadata/dependencies.yaml).
var CertManagerAPIs = []string{"Certificate", "Issuer"}

type object = map[string]any

func kindOf(o object) string       { s, _ := o["kind"].(string); return s }
func apiVersionOf(o object) string { s, _ := o["apiVersion"].(string); return s }
func nameOf(o object) string {
	m, _ := o["metadata"].(map[string]any)
	s, _ := m["name"].(string)
	return s
}

// Generate turns the kustomize output of config/manifests into a bundle.
func Generate(stream []byte, opts Options) (Bundle, error) {
	if _, err := semver.Parse(opts.Version); err != nil {
		return nil, fmt.Errorf("version %q is not semver (no leading v): %w", opts.Version, err)
	}
	objs, err := splitYAML(stream)
	if err != nil {
		return nil, err
	}
	var (
		csv          *operatorsv1alpha1.ClusterServiceVersion
		crds         []object
		deployments  []appsv1.Deployment
		roles        = map[string]rbacv1.Role{}
		clusterRoles = map[string]rbacv1.ClusterRole{}
		bindings     []rbacv1.RoleBinding
		cBindings    []rbacv1.ClusterRoleBinding
		samples      []object
		webhooks     []object
	)
	for _, o := range objs {
		switch kindOf(o) {
		case "ClusterServiceVersion":
			if csv != nil {
				return nil, fmt.Errorf("more than one ClusterServiceVersion base")
			}
			csv = &operatorsv1alpha1.ClusterServiceVersion{}
			err = convert(o, csv)
		case "CustomResourceDefinition":
			crds = append(crds, o)
		case "Deployment":
			var d appsv1.Deployment
			err = convert(o, &d)
			deployments = append(deployments, d)
		case "Role":
			var r rbacv1.Role
			err = convert(o, &r)
			roles[r.Name] = r
		case "ClusterRole":
			var r rbacv1.ClusterRole
			err = convert(o, &r)
			clusterRoles[r.Name] = r
		case "RoleBinding":
			var b rbacv1.RoleBinding
			err = convert(o, &b)
			bindings = append(bindings, b)
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			err = convert(o, &b)
			cBindings = append(cBindings, b)
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			webhooks = append(webhooks, o)
		case "Namespace", "ServiceAccount":
			// OLM installs into the namespace the admin picks and creates the service accounts
			// the install strategy names.
		default:
			samples = append(samples, o)
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kindOf(o), nameOf(o), err)
		}
	}
	if csv == nil {
		return nil, fmt.Errorf("no ClusterServiceVersion base in the input (config/manifests/bases)")
	}
	if len(deployments) == 0 {
		return nil, fmt.Errorf("no Deployment in the input: nothing to install")
	}

	name := opts.Package + ".v" + opts.Version
	csv.Name = name
	csv.Namespace = ""
	csv.Spec.Version.Version = semver.MustParse(opts.Version)
	csv.Spec.Replaces = opts.Replaces
	if opts.SkipRange != "" {
		csv.Annotations["olm.skipRange"] = opts.SkipRange
	}
	if len(opts.Icon) > 0 {
		csv.Spec.Icon = []operatorsv1alpha1.Icon{{Data: base64.StdEncoding.EncodeToString(opts.Icon), MediaType: "image/svg+xml"}}
	}

	// Install strategy: the Deployments, and the rules of every role bound to their service
	// accounts; roles bound to nothing (e.g. one the operator binds at run time) stay objects.
	strategy := operatorsv1alpha1.StrategyDetailsDeployment{}
	accounts := map[string]bool{}
	var images []string
	related := map[string]string{}
	for _, d := range deployments {
		for i := range d.Spec.Template.Spec.Containers {
			c := &d.Spec.Template.Spec.Containers[i]
			if ref, ok := opts.Images[c.Image]; ok {
				c.Image = ref
			}
			images = append(images, c.Image)
			related[c.Name] = c.Image
		}
		accounts[d.Spec.Template.Spec.ServiceAccountName] = true
		strategy.DeploymentSpecs = append(strategy.DeploymentSpecs, operatorsv1alpha1.StrategyDeploymentSpec{
			Name: d.Name, Label: d.Labels, Spec: d.Spec,
		})
	}
	boundRoles, boundClusterRoles := map[string]bool{}, map[string]bool{}
	perms, cperms := map[string][]rbacv1.PolicyRule{}, map[string][]rbacv1.PolicyRule{}
	for _, b := range bindings {
		for _, s := range b.Subjects {
			if s.Kind != rbacv1.ServiceAccountKind || !accounts[s.Name] {
				continue
			}
			if b.RoleRef.Kind != "Role" {
				return nil, fmt.Errorf("RoleBinding %s binds ClusterRole %s: OLM's install strategy cannot express that", b.Name, b.RoleRef.Name)
			}
			r, ok := roles[b.RoleRef.Name]
			if !ok {
				return nil, fmt.Errorf("RoleBinding %s: no Role %s", b.Name, b.RoleRef.Name)
			}
			perms[s.Name] = append(perms[s.Name], r.Rules...)
			boundRoles[r.Name] = true
		}
	}
	for _, b := range cBindings {
		for _, s := range b.Subjects {
			if s.Kind != rbacv1.ServiceAccountKind || !accounts[s.Name] {
				continue
			}
			r, ok := clusterRoles[b.RoleRef.Name]
			if !ok {
				return nil, fmt.Errorf("ClusterRoleBinding %s: no ClusterRole %s", b.Name, b.RoleRef.Name)
			}
			cperms[s.Name] = append(cperms[s.Name], r.Rules...)
			boundClusterRoles[r.Name] = true
		}
	}
	for _, sa := range sortedKeys(perms) {
		strategy.Permissions = append(strategy.Permissions, operatorsv1alpha1.StrategyDeploymentPermissions{ServiceAccountName: sa, Rules: perms[sa]})
	}
	for _, sa := range sortedKeys(cperms) {
		strategy.ClusterPermissions = append(strategy.ClusterPermissions, operatorsv1alpha1.StrategyDeploymentPermissions{ServiceAccountName: sa, Rules: cperms[sa]})
	}
	if csv.Spec.WebhookDefinitions, err = webhookDefinitions(webhooks, deployments); err != nil {
		return nil, err
	}
	csv.Spec.InstallStrategy = operatorsv1alpha1.NamedInstallStrategy{StrategyName: operatorsv1alpha1.InstallStrategyNameDeployment, StrategySpec: strategy}

	// Images: the operator's own (containerImage) and every image it runs or deploys.
	csv.Annotations["containerImage"] = images[0]
	for n, ref := range opts.RelatedImages {
		related[n] = ref
	}
	csv.Spec.RelatedImages = nil
	for _, n := range sortedKeys(related) {
		csv.Spec.RelatedImages = append(csv.Spec.RelatedImages, operatorsv1alpha1.RelatedImage{Name: n, Image: related[n]})
	}

	// Owned CRDs: every CRD of the stream, its storage version, with the descriptors of the base.
	bundle := Bundle{}
	base := map[string]operatorsv1alpha1.CRDDescription{}
	for _, d := range csv.Spec.CustomResourceDefinitions.Owned {
		base[d.Name] = d
	}
	csv.Spec.CustomResourceDefinitions.Owned = nil
	ownedKinds := map[string]bool{}
	for _, crd := range crds {
		var c struct {
			Spec struct {
				Group    string `json:"group"`
				Names    struct{ Kind, Plural string }
				Versions []struct {
					Name    string `json:"name"`
					Storage bool   `json:"storage"`
				} `json:"versions"`
			} `json:"spec"`
		}
		if err := convert(crd, &c); err != nil {
			return nil, fmt.Errorf("CRD %s: %w", nameOf(crd), err)
		}
		d, ok := base[nameOf(crd)]
		if !ok {
			return nil, fmt.Errorf("CRD %s has no entry in the CSV base's owned CRDs (descriptors, display name)", nameOf(crd))
		}
		delete(base, nameOf(crd))
		d.Kind = c.Spec.Names.Kind
		for _, v := range c.Spec.Versions {
			if v.Storage {
				d.Version = v.Name
			}
		}
		csv.Spec.CustomResourceDefinitions.Owned = append(csv.Spec.CustomResourceDefinitions.Owned, d)
		ownedKinds[c.Spec.Group+"/"+d.Kind] = true
		if bundle["manifests/"+c.Spec.Group+"_"+c.Spec.Names.Plural+".yaml"], err = toYAML(crd); err != nil {
			return nil, err
		}
	}
	for n := range base {
		return nil, fmt.Errorf("the CSV base owns %s but no such CRD is in the input", n)
	}

	// alm-examples: the samples of owned kinds; the other objects go into the bundle as they are.
	examples, extras := []object{}, []object{}
	for _, o := range samples {
		group, _, _ := strings.Cut(apiVersionOf(o), "/")
		if ownedKinds[group+"/"+kindOf(o)] {
			examples = append(examples, o)
		} else {
			extras = append(extras, o) // e.g. a Service; OLM refuses kinds a bundle may not carry
		}
	}
	if base, ok := csv.Annotations["alm-examples"]; ok {
		var more []object
		if err := json.Unmarshal([]byte(base), &more); err != nil {
			return nil, fmt.Errorf("alm-examples of the CSV base: %w", err)
		}
		examples = append(examples, more...)
	}
	alm, err := json.MarshalIndent(examples, "", "  ")
	if err != nil {
		return nil, err
	}
	csv.Annotations["alm-examples"] = string(alm)
	for _, o := range objs {
		k := kindOf(o)
		if (k == "ClusterRole" && !boundClusterRoles[nameOf(o)]) || (k == "Role" && !boundRoles[nameOf(o)]) {
			extras = append(extras, o)
		}
	}
	for _, o := range extras {
		group, version, ok := strings.Cut(apiVersionOf(o), "/")
		if !ok {
			group, version = "core", apiVersionOf(o)
		}
		file := fmt.Sprintf("manifests/%s_%s_%s_%s.yaml", nameOf(o), group, version, strings.ToLower(kindOf(o)))
		if bundle[file], err = toYAML(o); err != nil {
			return nil, err
		}
	}

	csvYAML, err := toYAML(csv)
	if err != nil {
		return nil, err
	}
	bundle["manifests/"+opts.Package+".clusterserviceversion.yaml"] = csvYAML
	bundle["metadata/annotations.yaml"] = annotationsYAML(opts)
	if !opts.NoDependencies {
		bundle["metadata/dependencies.yaml"] = dependenciesYAML()
	}
	return bundle, nil
}

// webhookDefinitions turns admission webhook configurations into the CSV's webhookdefinitions:
// OLM creates the configurations, a Service and a serving certificate for the Deployment the
// webhook's Service points at (same name), mounted at /apiserver.local.config/certificates.
func webhookDefinitions(configs []object, deployments []appsv1.Deployment) ([]operatorsv1alpha1.WebhookDescription, error) {
	var defs []operatorsv1alpha1.WebhookDescription
	for _, o := range configs {
		var cfg struct {
			Webhooks []struct {
				Name                    string                                          `json:"name"`
				Rules                   []admissionregistrationv1.RuleWithOperations    `json:"rules"`
				FailurePolicy           *admissionregistrationv1.FailurePolicyType      `json:"failurePolicy"`
				MatchPolicy             *admissionregistrationv1.MatchPolicyType        `json:"matchPolicy"`
				ObjectSelector          *metav1.LabelSelector                           `json:"objectSelector"`
				SideEffects             *admissionregistrationv1.SideEffectClass        `json:"sideEffects"`
				TimeoutSeconds          *int32                                          `json:"timeoutSeconds"`
				AdmissionReviewVersions []string                                        `json:"admissionReviewVersions"`
				ReinvocationPolicy      *admissionregistrationv1.ReinvocationPolicyType `json:"reinvocationPolicy"`
				ClientConfig            struct {
					Service *struct {
						Name string  `json:"name"`
						Path *string `json:"path"`
					} `json:"service"`
				} `json:"clientConfig"`
			} `json:"webhooks"`
		}
		if err := convert(o, &cfg); err != nil {
			return nil, fmt.Errorf("%s %s: %w", kindOf(o), nameOf(o), err)
		}
		typ := operatorsv1alpha1.ValidatingAdmissionWebhook
		if kindOf(o) == "MutatingWebhookConfiguration" {
			typ = operatorsv1alpha1.MutatingAdmissionWebhook
		}
		for _, w := range cfg.Webhooks {
			svc := w.ClientConfig.Service
			if svc == nil {
				return nil, fmt.Errorf("%s %s: webhook %s calls a URL; OLM serves webhooks from a Deployment's Service only", kindOf(o), nameOf(o), w.Name)
			}
			i := slices.IndexFunc(deployments, func(d appsv1.Deployment) bool { return d.Name == svc.Name })
			if i < 0 {
				return nil, fmt.Errorf("%s %s: webhook %s calls Service %s, but no Deployment has that name", kindOf(o), nameOf(o), w.Name, svc.Name)
			}
			var port *intstr.IntOrString
			for _, c := range deployments[i].Spec.Template.Spec.Containers {
				for _, p := range c.Ports {
					if p.Name == "https" {
						port = &intstr.IntOrString{Type: intstr.Int, IntVal: p.ContainerPort}
					}
				}
			}
			if port == nil {
				return nil, fmt.Errorf("Deployment %s serves webhook %s but has no container port named https", svc.Name, w.Name)
			}
			// OLM refuses a CSV whose webhook definitions repeat a name, and cert-manager names
			// its mutating and validating webhook alike: the later one gets its type as prefix.
			name := w.Name
			if slices.ContainsFunc(defs, func(d operatorsv1alpha1.WebhookDescription) bool { return d.GenerateName == name }) {
				name = strings.ToLower(strings.TrimSuffix(string(typ), "AdmissionWebhook")) + "." + name
			}
			defs = append(defs, operatorsv1alpha1.WebhookDescription{
				GenerateName: name, Type: typ, DeploymentName: svc.Name, ContainerPort: 443, TargetPort: port,
				Rules: w.Rules, FailurePolicy: w.FailurePolicy, MatchPolicy: w.MatchPolicy, ObjectSelector: w.ObjectSelector,
				SideEffects: w.SideEffects, TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions,
				ReinvocationPolicy: w.ReinvocationPolicy, WebhookPath: svc.Path,
			})
		}
	}
	return defs, nil
}

// BundleAnnotations are the keys of metadata/annotations.yaml and their values for opts.
func BundleAnnotations(opts Options) map[string]string {
	return map[string]string{
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.bundle.manifests.v1":       "manifests/",
		"operators.operatorframework.io.bundle.metadata.v1":        "metadata/",
		"operators.operatorframework.io.bundle.package.v1":         opts.Package,
		"operators.operatorframework.io.bundle.channels.v1":        strings.Join(opts.Channels, ","),
		"operators.operatorframework.io.bundle.channel.default.v1": opts.DefaultChannel,
	}
}

func annotationsYAML(opts Options) []byte {
	var b bytes.Buffer
	b.WriteString("# Generated by `make bundle` (hack/bundle). Do not edit.\nannotations:\n")
	a := BundleAnnotations(opts)
	for _, k := range sortedKeys(a) {
		fmt.Fprintf(&b, "  %s: %s\n", k, a[k])
	}
	return b.Bytes()
}

func dependenciesYAML() []byte {
	var b bytes.Buffer
	b.WriteString("# Generated by `make bundle` (hack/bundle). Do not edit.\n")
	b.WriteString("# knit issues its certificates through cert-manager: OLM installs a provider of these APIs\n")
	b.WriteString("# (the cert-manager package) with it, or refuses to install knit.\ndependencies:\n")
	for _, k := range CertManagerAPIs {
		fmt.Fprintf(&b, "- type: olm.gvk\n  value:\n    group: cert-manager.io\n    kind: %s\n    version: v1\n", k)
	}
	return b.Bytes()
}

// Write replaces dir with the bundle.
func (b Bundle) Write(dir string) error {
	for _, sub := range []string{"manifests", "metadata"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	for name, data := range b {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func splitYAML(stream []byte) ([]object, error) {
	var objs []object
	for i, doc := range bytes.Split(append([]byte("\n"), stream...), []byte("\n---")) {
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(o) == 0 {
			continue
		}
		if kindOf(o) == "" {
			return nil, fmt.Errorf("document %d has no kind", i+1)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

func convert(in, out any) error {
	data, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// toYAML marshals v without the null fields typed objects carry (creationTimestamp: null).
func toYAML(v any) ([]byte, error) {
	var m object
	if err := convert(v, &m); err != nil {
		return nil, err
	}
	if _, ok := v.(*operatorsv1alpha1.ClusterServiceVersion); ok {
		delete(m, "status") // written by OLM, never part of a bundle
	}
	return yaml.Marshal(dropNulls(m))
}

func dropNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
				continue
			}
			t[k] = dropNulls(e)
		}
	case []any:
		for i := range t {
			t[i] = dropNulls(t[i])
		}
	}
	return v
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }
