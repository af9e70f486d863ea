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

package controllers

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/versions"
)

// clusterScopedChildren are the cluster-scoped kinds the operator writes: it may name them only.
var clusterScopedChildren = []string{"clusterroles", "clusterrolebindings", "mutatingwebhookconfigurations"}

// ruleViolations lists what least privilege forbids in a set of rules.
func ruleViolations(role string, rules []rbacv1.PolicyRule) []string {
	var out []string
	bad := func(r rbacv1.PolicyRule, format string, args ...any) {
		out = append(out, fmt.Sprintf("%s: %v %v %v %v: %s", role, r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, fmt.Sprintf(format, args...)))
	}
	for _, r := range rules {
		for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames, r.NonResourceURLs} {
			if slices.Contains(field, "*") {
				bad(r, "wildcard")
			}
		}
		named := len(r.ResourceNames) > 0
		for _, verb := range r.Verbs {
			switch verb {
			case "escalate", "impersonate", "deletecollection":
				bad(r, "verb %s", verb)
			case "bind", "approve":
				if !named {
					bad(r, "%s without resourceNames", verb)
				}
			}
		}
		for _, res := range r.Resources {
			switch {
			case res == "secrets" && role == "manager-role":
				bad(r, "Secrets cluster-wide; the operator reads them through secrets-reader in the control-plane namespace only")
			case slices.Contains(clusterScopedChildren, res) && !named:
				for _, verb := range r.Verbs {
					if verb != "list" && verb != "watch" && verb != "create" {
						bad(r, "%s on %s without resourceNames", verb, res)
					}
				}
			}
		}
	}
	return out
}

// readRoles reads every Role and ClusterRole under config/rbac.
func readRoles(t *testing.T) map[string][]rbacv1.PolicyRule {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "config", "rbac", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no RBAC under config/rbac: %v", err)
	}
	roles := map[string][]rbacv1.PolicyRule{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(raw, []byte("\n---")) {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if meta.Kind != "ClusterRole" && meta.Kind != "Role" {
				continue
			}
			var role rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict(doc, &role); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			roles[role.Name] = role.Rules
		}
	}
	return roles
}

func TestOperatorRBACIsLeastPrivilege(t *testing.T) {
	roles := readRoles(t)
	if _, ok := roles["manager-role"]; !ok {
		t.Fatal("config/rbac has no manager-role")
	}
	for name, rules := range roles {
		for _, v := range ruleViolations(name, rules) {
			t.Error(v)
		}
	}
	for name, maxRules := range map[string]int{"secrets-reader": 3, "gateway-secrets-reader": 1} {
		got := roles[name]
		if len(got) == 0 || len(got) > maxRules {
			t.Errorf("%s should have 1 to %d rules: %v", name, maxRules, got)
		}
		for _, r := range got {
			if !slices.Equal(r.Resources, []string{"secrets"}) {
				t.Errorf("%s should grant Secrets only: %v", name, got)
			}
			if slices.Contains(r.Verbs, "update") && !slices.Equal(r.ResourceNames, []string{issuingCAName}) {
				t.Errorf("%s may update only Secret %s: %v", name, issuingCAName, r)
			}
		}
	}
}

// The operator names its cluster-scoped children; every supported release's names must be there.
func TestOperatorRBACNamesEveryReleasesObjects(t *testing.T) {
	rules := readRoles(t)["manager-role"]
	covered := func(resource, verb, name string) bool {
		for _, r := range rules {
			if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) && slices.Contains(r.ResourceNames, name) {
				return true
			}
		}
		return false
	}
	for _, rel := range versions.Default.Versions {
		if rel.EndOfLife {
			continue
		}
		rev := &meshv1.MeshRevision{}
		rev.Name = RevisionName(meshv1.MeshName, rel.Version)
		for _, c := range []struct{ resource, verb, name string }{
			{"clusterroles", "update", controlPlaneName(rev)},
			{"clusterrolebindings", "update", controlPlaneName(rev)},
			{"clusterrolebindings", "update", gatewaySecretsBindingName(rev)},
			{"mutatingwebhookconfigurations", "update", injectorName(rev)},
			{"mutatingwebhookconfigurations", "delete", injectorName(rev)},
		} {
			if !covered(c.resource, c.verb, c.name) {
				t.Errorf("release %s: manager-role cannot %s %s %s; add it to the RBAC markers", rel.Version, c.verb, c.resource, c.name)
			}
		}
	}
	bootstrapped := &meshv1.MeshRevision{Spec: meshv1.MeshRevisionSpec{Namespace: "knit-system",
		IssuerRef: meshv1.IssuerReference{Name: caIssuerName, Kind: meshv1.IssuerKindIssuer}}}
	if !covered("signers", "approve", signerName(bootstrapped)) {
		t.Errorf("manager-role cannot grant approval for the bootstrapped CA's signer %s", signerName(bootstrapped))
	}
}

func TestControlPlaneRBACIsLeastPrivilege(t *testing.T) {
	for _, ref := range []meshv1.IssuerReference{
		{Name: caIssuerName, Kind: meshv1.IssuerKindIssuer, Group: "cert-manager.io"},
		{Name: "corp-ca", Kind: meshv1.IssuerKindClusterIssuer, Group: "cert-manager.io"},
	} {
		rev := &meshv1.MeshRevision{Spec: meshv1.MeshRevisionSpec{Namespace: "knit-system", IssuerRef: ref}}
		rules := controlPlaneRules(rev)
		for _, v := range ruleViolations("control plane", rules) {
			t.Error(v)
		}
		var approves []string
		for _, r := range rules {
			if slices.Contains(r.Verbs, "approve") {
				approves = append(approves, r.ResourceNames...)
			}
		}
		want := map[meshv1.IssuerKind]string{
			meshv1.IssuerKindIssuer:        "issuers.cert-manager.io/knit-system.knit-ca",
			meshv1.IssuerKindClusterIssuer: "clusterissuers.cert-manager.io/corp-ca",
		}[ref.Kind]
		if !slices.Equal(approves, []string{want}) {
			t.Errorf("control plane approves %v, want only its own signer %s", approves, want)
		}
	}
}
