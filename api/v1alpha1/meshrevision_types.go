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

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MeshRevisionSpec is one mesh version in flight: the operator runs one control plane per
// revision, so during a RevisionBased upgrade the old and new versions serve side by side.
// A MeshRevision is created and owned by the Mesh, as a ReplicaSet is by a Deployment; people
// read it, the operator writes it.
type MeshRevisionSpec struct {
	// version is the mesh release this revision runs. A RevisionBased upgrade makes a new
	// revision for a new version; an InPlace upgrade changes it here, and the revision's
	// control-plane Deployment rolls to the new release under the same name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Version string `json:"version"`

	// namespace the revision's control plane runs in.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="namespace is immutable"
	Namespace string `json:"namespace"`

	// controlPlane is the control-plane configuration copied from the Mesh.
	// +optional
	ControlPlane ControlPlaneSpec `json:"controlPlane,omitzero"`

	// trustDomain of the workload identities this revision issues.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	TrustDomain string `json:"trustDomain"`

	// issuerRef is the cert-manager issuer that signs this revision's serving and workload
	// certificates: the Mesh's own, or the CA the operator bootstrapped.
	// +required
	IssuerRef IssuerReference `json:"issuerRef"`
}

// MeshRevisionStatus is the observed state of a revision.
type MeshRevisionStatus struct {
	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions describe the revision's control plane.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// version is the release every control-plane pod runs: spec.version once the Deployment
	// has rolled out with it.
	// +optional
	Version string `json:"version,omitempty"`

	// readyReplicas is the number of ready control-plane pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// controlPlanes are the reports of the revision's control-plane pods on the proxies
	// connected to them over xDS, one entry per pod. Each pod sees only its own streams, so each
	// writes only its own entry (server-side apply, field manager knit-controlplane/<pod>): when
	// its proxies change, at most every few seconds, and at least every
	// ControlPlaneReportHeartbeat. A pod removes its entry when it stops; an entry not renewed
	// within ControlPlaneReportExpiry is a pod that died, and counts for nothing (the operator
	// removes it). The Mesh adds up the live entries of every revision into status.dataPlane and
	// its DataPlaneConfigured condition.
	// +optional
	// +listType=map
	// +listMapKey=pod
	// +kubebuilder:validation:MaxItems=64
	ControlPlanes []ControlPlaneReport `json:"controlPlanes,omitempty"`
}

// How often a control-plane pod renews its report when nothing changes, and how old a report
// may get before it is taken for a pod that died without removing it.
const (
	ControlPlaneReportHeartbeat = time.Minute
	ControlPlaneReportExpiry    = 3 * ControlPlaneReportHeartbeat
)

// ControlPlaneReport is what one control-plane pod knows of the proxies connected to it.
type ControlPlaneReport struct {
	// pod is the name of the control-plane pod (in spec.namespace).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`

	// lastUpdateTime is when the pod wrote this report.
	LastUpdateTime metav1.Time `json:"lastUpdateTime"`

	// connected is the number of proxies with an authenticated xDS stream to this pod.
	Connected int32 `json:"connected"`

	// upToDate is the number of connected proxies that accepted (ACKed) every response the pod
	// sent them, the latest included, and refuse none.
	UpToDate int32 `json:"upToDate"`

	// rejecting is the number of connected proxies whose latest response of some resource type
	// was refused (NACK) and not yet followed by one they accepted: they keep running the
	// configuration they accepted before.
	// +optional
	Rejecting int32 `json:"rejecting,omitempty"`

	// rejection is the most recent refusal among the proxies that reject their configuration
	// now; absent when none does.
	// +optional
	Rejection *ConfigRejection `json:"rejection,omitempty"`
}

// ConfigRejection is one proxy's refusal (NACK) of a configuration it was sent.
type ConfigRejection struct {
	// proxy is the refusing proxy's pod, <namespace>/<name> (its xDS node.id).
	// +kubebuilder:validation:MaxLength=317
	Proxy string `json:"proxy"`

	// typeURL is the xDS resource type refused, e.g.
	// type.googleapis.com/envoy.config.cluster.v3.Cluster.
	// +kubebuilder:validation:MaxLength=256
	TypeURL string `json:"typeURL"`

	// message is the proxy's error detail, cut to 512 bytes.
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message"`

	// time the refusal was received.
	Time metav1.Time `json:"time"`
}

// MeshRevision is one mesh version the operator runs: a control plane and the proxies it
// injected. Named <mesh>-<version with dots as dashes>, e.g. default-v0-1-0.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=meshrev
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshRevision struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// +required
	Spec MeshRevisionSpec `json:"spec"`

	// +optional
	Status MeshRevisionStatus `json:"status,omitzero"`
}

// MeshRevisionList is a list of MeshRevision.
// +kubebuilder:object:root=true
type MeshRevisionList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []MeshRevision `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshRevision{}, &MeshRevisionList{})
}
