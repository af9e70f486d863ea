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

package integration

import (
	"context"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/knit-mesh/knit/test/testenv"
)

// The operator's identity as config/default installs it (namePrefix "knit-").
const (
	operatorNamespace      = "knit-operator"
	operatorServiceAccount = "knit-controller-manager"
	operatorUser           = "system:serviceaccount:" + operatorNamespace + ":" + operatorServiceAccount
)

// installOperatorRBAC applies the ClusterRoles of config/rbac, as the install names them, and
// binds the manager's role to the operator's ServiceAccount. It returns a config that
// impersonates that ServiceAccount: the suite's manager runs with exactly the operator's RBAC,
// so a permission the code needs and the markers lack fails a spec.
func installOperatorRBAC(ctx context.Context, admin client.Client, cfg *rest.Config) *rest.Config {
	GinkgoHelper()
	Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())
	Expect(admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
		Name: operatorServiceAccount, Namespace: operatorNamespace}})).To(Succeed())
	for _, file := range []string{"role.yaml", "secrets_reader_role.yaml"} {
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", file))
		Expect(err).NotTo(HaveOccurred())
		var role rbacv1.ClusterRole
		Expect(yaml.Unmarshal(raw, &role)).To(Succeed())
		role.Name = "knit-" + role.Name
		Expect(admin.Create(ctx, &role)).To(Succeed())
	}
	Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "knit-manager-rolebinding"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "knit-manager-role"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: operatorServiceAccount, Namespace: operatorNamespace}},
	})).To(Succeed())

	asOperator := rest.CopyConfig(cfg)
	asOperator.Impersonate = rest.ImpersonationConfig{
		UserName: operatorUser,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace, "system:authenticated"},
	}
	return asOperator
}

var _ = Describe("The operator's own permissions", func() {
	ctx := context.Background()

	It("are enforced in this suite, and do not include reading Secrets outside the control-plane namespace", func() {
		asOperator, err := client.New(operatorConfig, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		err = asOperator.List(ctx, &corev1.SecretList{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "listing Secrets cluster-wide as the operator: %v", err)
		err = asOperator.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "anything"}, &corev1.Secret{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "reading a Secret in kube-system as the operator: %v", err)
	})
})
