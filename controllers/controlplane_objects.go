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
	"strconv"
	"strings"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

// Ports the control plane serves on.
const (
	portWebhook  = 8443  // sidecar-injection webhook (HTTPS)
	portXDS      = 15010 // discovery, xDS over gRPC with TLS
	portIdentity = 15012 // workload certificates (CSR) over gRPC with TLS
	portHealth   = 15014 // /healthz and /readyz (plain HTTP, probes only)

	servingCertMountPath = "/etc/knit/tls"
)

// RevisionName names the MeshRevision that runs version for a Mesh: "default-v0-1-0".
func RevisionName(meshName, version string) string {
	return meshName + "-" + strings.NewReplacer(".", "-", "+", "-").Replace(version)
}

// controlPlaneName names every per-revision object: Deployment, Service, ServiceAccount,
// PodDisruptionBudget, serving Certificate and its Secret, ClusterRole(Binding).
func controlPlaneName(rev *meshv1.MeshRevision) string {
	return "knit-controlplane-" + strings.TrimPrefix(rev.Name, meshv1.MeshName+"-")
}

func controlPlaneLabels(rev *meshv1.MeshRevision) map[string]string {
	return map[string]string{
		meshv1.LabelPartOf:    meshv1.PartOfValue,
		meshv1.LabelComponent: "controlplane",
		meshv1.LabelRevision:  rev.Name,
	}
}

// controlPlaneSelector selects a revision's control-plane pods; it never changes (selectors are
// immutable on Deployments).
func controlPlaneSelector(rev *meshv1.MeshRevision) map[string]string {
	return map[string]string{"app": "knit-controlplane", meshv1.LabelRevision: rev.Name}
}

// annotationServingCertificate on the control plane's pod template is the fingerprint of the
// serving certificate the pods start with: a new certificate rolls the pods, and once the
// rollout is complete no pod can serve an older one, so the webhook may stop trusting its CA.
const annotationServingCertificate = "knit.dev/serving-certificate"

func desiredDeployment(rev *meshv1.MeshRevision, image string, injectArgs []string, servingCertFingerprint string) appsv1.DeploymentSpec {
	name := controlPlaneName(rev)
	cp := rev.Spec.ControlPlane
	podLabels := withLabels(controlPlaneLabels(rev), controlPlaneSelector(rev))
	var podAnnotations map[string]string
	if servingCertFingerprint != "" {
		podAnnotations = map[string]string{annotationServingCertificate: servingCertFingerprint}
	}
	return appsv1.DeploymentSpec{
		Replicas: ptr.To(cp.Replicas),
		Selector: &metav1.LabelSelector{MatchLabels: controlPlaneSelector(rev)},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
			Spec: corev1.PodSpec{
				ServiceAccountName: name,
				SecurityContext: &corev1.PodSecurityContext{
					RunAsNonRoot:   ptr.To(true),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				// Spread replicas so one node going away leaves injection and discovery serving.
				Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
					PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
						Weight: 100,
						PodAffinityTerm: corev1.PodAffinityTerm{
							TopologyKey:   corev1.LabelHostname,
							LabelSelector: &metav1.LabelSelector{MatchLabels: controlPlaneSelector(rev)},
						},
					}},
				}},
				Containers: []corev1.Container{{
					Name:            "controlplane",
					Image:           image,
					ImagePullPolicy: corev1.PullIfNotPresent,
					Args: append([]string{
						"--revision=" + rev.Name,
						"--trust-domain=" + rev.Spec.TrustDomain,
						"--tls-dir=" + servingCertMountPath,
						"--issuer-name=" + rev.Spec.IssuerRef.Name,
						"--issuer-kind=" + string(rev.Spec.IssuerRef.Kind),
						"--issuer-group=" + rev.Spec.IssuerRef.Group,
					}, injectArgs...),
					Env: []corev1.EnvVar{{
						// The key of this replica's report on its proxies in the MeshRevision's status.
						Name:      "POD_NAME",
						ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
					}, {
						Name:      "POD_NAMESPACE",
						ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
					}, {
						// The control plane keeps its Go heap under 90 % of this (GOMEMLIMIT);
						// without a limit it is the node's allocatable memory.
						Name: "KNIT_MEMORY_LIMIT",
						ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
							ContainerName: "controlplane", Resource: "limits.memory",
						}},
					}},
					Ports: []corev1.ContainerPort{
						{Name: "webhook", ContainerPort: portWebhook},
						{Name: "grpc-xds", ContainerPort: portXDS},
						{Name: "grpc-identity", ContainerPort: portIdentity},
						{Name: "health", ContainerPort: portHealth},
					},
					ReadinessProbe: httpProbe("/readyz", 0),
					LivenessProbe:  httpProbe("/healthz", 10),
					Resources:      cp.Resources,
					SecurityContext: &corev1.SecurityContext{
						AllowPrivilegeEscalation: ptr.To(false),
						ReadOnlyRootFilesystem:   ptr.To(true),
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
					VolumeMounts: []corev1.VolumeMount{{Name: "serving-cert", MountPath: servingCertMountPath, ReadOnly: true}},
				}},
				Volumes: []corev1.Volume{{
					Name:         "serving-cert",
					VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}},
				}},
			},
		},
	}
}

// identityArgs are the Mesh's workload-certificate settings the identity server needs.
func identityArgs(mesh *meshv1.Mesh) []string {
	t := mesh.Spec.Trust
	duration, renewBefore := t.WorkloadCertDuration.Duration, t.WorkloadCertRenewBefore.Duration
	if duration == 0 {
		duration = defaultWorkloadCertDuration
	}
	if renewBefore == 0 {
		renewBefore = defaultWorkloadCertRenewBefore
	}
	approve := mesh.Annotations[meshv1.AnnotationWorkloadCertificateApprover] != meshv1.ApproverExternal
	return []string{
		fmt.Sprintf("--identity-addr=:%d", portIdentity),
		"--workload-cert-duration=" + duration.String(),
		"--workload-cert-renew-before=" + renewBefore.String(),
		"--approve-workload-certificates=" + strconv.FormatBool(approve),
	}
}

// testWorkloadCertArgs passes the operator's test-only workload certificate lifetime to the
// control plane; none when it is off. It exists so an end-to-end test can watch certificates
// renew within minutes, below the Mesh API's 1 h minimum, which stays as it is.
func testWorkloadCertArgs(d time.Duration) []string {
	if d <= 0 {
		return nil
	}
	return []string{"--test-workload-cert-duration=" + d.String()}
}

// The API's defaults, for a Mesh read without them (never stored that way).
const (
	defaultWorkloadCertDuration    = 24 * time.Hour
	defaultWorkloadCertRenewBefore = 8 * time.Hour
)

// httpProbe probes the health port. Every number is spelled out, the API server's defaults
// included: DeepDerivative treats a zero number as a value, not as "unset".
func httpProbe(path string, initialDelay int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")},
		},
		InitialDelaySeconds: initialDelay,
		TimeoutSeconds:      1,
		PeriodSeconds:       10,
		SuccessThreshold:    1,
		FailureThreshold:    3,
	}
}

func desiredService(rev *meshv1.MeshRevision) corev1.ServiceSpec {
	port := func(name string, p int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: p, TargetPort: intstr.FromString(name)}
	}
	return corev1.ServiceSpec{
		Selector: controlPlaneSelector(rev),
		Ports: []corev1.ServicePort{
			{Name: "webhook", Port: 443, TargetPort: intstr.FromString("webhook")},
			port("grpc-xds", portXDS),
			port("grpc-identity", portIdentity),
		},
	}
}

func desiredPDB(rev *meshv1.MeshRevision) policyv1.PodDisruptionBudgetSpec {
	// maxUnavailable rather than minAvailable: with one replica a drain can still proceed.
	return policyv1.PodDisruptionBudgetSpec{
		MaxUnavailable: ptr.To(intstr.FromInt32(1)),
		Selector:       &metav1.LabelSelector{MatchLabels: controlPlaneSelector(rev)},
	}
}

// desiredServingCertificate is the control plane's serving certificate for the webhook, xDS and
// identity servers, valid for the Service's in-cluster names.
func desiredServingCertificate(rev *meshv1.MeshRevision) cmapi.CertificateSpec {
	name, ns := controlPlaneName(rev), rev.Spec.Namespace
	return cmapi.CertificateSpec{
		SecretName: name,
		SecretTemplate: &cmapi.CertificateSecretTemplate{
			Labels: controlPlaneLabels(rev),
		},
		CommonName: name + "." + ns + ".svc",
		DNSNames: []string{
			name + "." + ns + ".svc",
			name + "." + ns + ".svc.cluster.local",
			name + "." + ns,
			name,
		},
		Duration:    &metav1.Duration{Duration: 30 * 24 * time.Hour},
		RenewBefore: &metav1.Duration{Duration: 10 * 24 * time.Hour},
		PrivateKey: &cmapi.CertificatePrivateKey{
			Algorithm:      cmapi.ECDSAKeyAlgorithm,
			Size:           256,
			RotationPolicy: cmapi.RotationPolicyAlways,
		},
		Usages: []cmapi.KeyUsage{cmapi.UsageDigitalSignature, cmapi.UsageServerAuth},
		IssuerRef: cmmeta.IssuerReference{
			Name:  rev.Spec.IssuerRef.Name,
			Kind:  string(rev.Spec.IssuerRef.Kind),
			Group: rev.Spec.IssuerRef.Group,
		},
	}
}

// controlPlaneRules is what a revision's control plane may do: read what discovery and
// injection need (knit Gateways included), write route status (GAMMA and Gateway parents) and its own MeshRevision's status.controlPlanes, review tokens for xDS and identity, and request workload certificates and approve
// them for its own issuer's signer only. The operator holds these permissions itself (RBAC
// markers on MeshRevisionReconciler) so the API server lets it grant them.
func controlPlaneRules(rev *meshv1.MeshRevision) []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces", "configmaps"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificaterequests"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificaterequests/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"cert-manager.io"}, Resources: []string{"signers"}, Verbs: []string{"approve"}, ResourceNames: []string{signerName(rev)}},
		{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes", "grpcroutes", "gateways", "gatewayclasses", "referencegrants"}, Verbs: []string{"get", "list", "watch"}},
		// The verdict on HTTPS listeners' certificateRefs goes into an annotation of the Gateway
		// (gateway.AnnotationCertificates), for the operator. (Secrets: GatewaySecretsReaderRole.)
		{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"gateways"}, Verbs: []string{"update"}},
		{APIGroups: []string{"gateway.networking.k8s.io"}, Resources: []string{"httproutes/status", "grpcroutes/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"mesh.knit.dev"}, Resources: []string{"meshes", "meshrevisions"}, Verbs: []string{"get", "list", "watch"}},
		// Each replica reports its proxies into its own revision's status (server-side apply).
		{APIGroups: []string{"mesh.knit.dev"}, Resources: []string{"meshrevisions/status"}, Verbs: []string{"patch"}, ResourceNames: []string{rev.Name}},
	}
}
