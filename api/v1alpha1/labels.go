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

package v1alpha1

// Labels and annotations knit reads and writes.
const (
	// LabelInject on a namespace set to InjectEnabled meshes its pods with the active revision.
	LabelInject = "knit.dev/inject"
	// InjectEnabled is the value of LabelInject that meshes a namespace.
	InjectEnabled = "enabled"
	// LabelRevision on a namespace meshes its pods with that MeshRevision; on objects the
	// operator makes, it names the revision they belong to.
	LabelRevision = "knit.dev/rev"
	// LabelPartOf marks every object the operator makes.
	LabelPartOf = "app.kubernetes.io/part-of"
	// PartOfValue is the value of LabelPartOf.
	PartOfValue = "knit"
	// LabelComponent names the part of the mesh an object belongs to.
	LabelComponent = "app.kubernetes.io/component"
	// LabelTrustBundle marks the trust-bundle ConfigMaps the operator distributes.
	LabelTrustBundle = "knit.dev/trust-bundle"
	// AnnotationWorkloadCertificateApprover on the Mesh set to ApproverExternal turns knit's own
	// approval of workload CertificateRequests off, for clusters where another approver
	// (cert-manager's approver-policy) decides; any other value, or none, keeps it on.
	AnnotationWorkloadCertificateApprover = "knit.dev/workload-certificate-approver"
	// ApproverExternal is the value of AnnotationWorkloadCertificateApprover that leaves approval
	// to another approver.
	ApproverExternal = "external"
)
