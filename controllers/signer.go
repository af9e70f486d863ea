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
	"fmt"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// signerName is how cert-manager names the signer of an issuer when it checks who may approve a
// CertificateRequest: "issuers.<group>/<namespace>.<name>" or "clusterissuers.<group>/<name>".
func signerName(rev *meshv1.MeshRevision) string {
	ref := rev.Spec.IssuerRef
	group := ref.Group
	if group == "" {
		group = cmapi.SchemeGroupVersion.Group
	}
	if ref.Kind == meshv1.IssuerKindClusterIssuer {
		return "clusterissuers." + group + "/" + ref.Name
	}
	return "issuers." + group + "/" + rev.Spec.Namespace + "." + ref.Name
}

// SignerNotGrantedError says the API server refused the control plane's ClusterRole because the
// operator itself may not approve for the revision's signer (it can grant only what it holds).
type SignerNotGrantedError struct {
	Signer string
	Err    error
}

func (e *SignerNotGrantedError) Error() string {
	return fmt.Sprintf("the operator may not grant approval of CertificateRequests for signer %s, so the control plane "+
		"could not approve workload certificates: grant the operator's ServiceAccount the verb approve on "+
		"signers.cert-manager.io with resourceNames [%s] (README, \"Your own issuer\"): %v", e.Signer, e.Signer, e.Err)
}

func (e *SignerNotGrantedError) Unwrap() error { return e.Err }
