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
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// DefaultSecretsReaderRole is the ClusterRole (config/rbac/secrets_reader_role.yaml, named with
// the install's "knit-" prefix) that lets the operator read Secrets. The operator holds it only
// in the control-plane namespace, through a RoleBinding it makes there: it reads the trust root
// and the serving certificates' CA from cert-manager's Secrets, and lists the namespace's
// Secrets before deleting it with the Mesh. It never reads Secrets anywhere else.
const DefaultSecretsReaderRole = "knit-secrets-reader"

// GatewaySecretsReaderRole is the ClusterRole (config/rbac/gateway_secrets_reader_role.yaml)
// that lets a revision's control plane read kubernetes.io/tls Secrets in every namespace: the
// certificates that Gateways' HTTPS listeners name, which it sends to those Gateways' proxies.
// The operator does not hold it; it may only bind it (verb bind, by name) to each revision's
// control plane, with the ClusterRoleBinding gatewaySecretsBindingName.
const GatewaySecretsReaderRole = "knit-gateway-secrets-reader"

// gatewaySecretsBindingName names the ClusterRoleBinding of a revision's control plane to
// GatewaySecretsReaderRole.
func gatewaySecretsBindingName(rev *meshv1.MeshRevision) string {
	return controlPlaneName(rev) + "-gateway-secrets"
}

// secretsAccessName names the operator's RoleBinding in the control-plane namespace.
const secretsAccessName = "knit-operator-secrets"

// ensureSecretsAccess binds the Secrets reader role to the operator's ServiceAccount in the
// control-plane namespace. Without a known ServiceAccount (run outside a cluster, as in local
// runs) the operator uses whatever access its credentials have.
func (r *MeshReconciler) ensureSecretsAccess(ctx context.Context, mesh *meshv1.Mesh) error {
	if r.OperatorServiceAccount == "" || r.OperatorNamespace == "" {
		return nil
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: secretsAccessName, Namespace: mesh.Spec.ControlPlane.Namespace}}
	return ensure(ctx, r.Client, r.APIReader, r.Scheme(), mesh, binding, func() {
		syncLabels(binding, map[string]string{meshv1.LabelPartOf: meshv1.PartOfValue, meshv1.LabelComponent: "operator"})
		if binding.RoleRef.Name == "" { // roleRef is immutable
			binding.RoleRef = rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.SecretsReaderRole}
		}
		syncTo(&binding.Subjects, []rbacv1.Subject{{
			Kind: rbacv1.ServiceAccountKind, Name: r.OperatorServiceAccount, Namespace: r.OperatorNamespace,
		}})
	})
}
