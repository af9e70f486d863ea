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

// Condition types of a Mesh. Ready summarises the others; each carries a reason and a message
// that names the object at fault.
const (
	// ConditionReady is True when the mesh is fully working: the summary of the others.
	ConditionReady = "Ready"
	// ConditionReconciled is True when the last reconcile applied the spec without error.
	ConditionReconciled = "Reconciled"
	// ConditionAvailable is True when the active revision's control plane is available.
	ConditionAvailable = "Available"
	// ConditionControlPlaneReady is True when every revision's control plane is ready.
	ConditionControlPlaneReady = "ControlPlaneReady"
	// ConditionCertificatesReady is True when the issuer chain is Ready in cert-manager.
	ConditionCertificatesReady = "CertificatesReady"
	// ConditionCertificatesHealthy is False when a root or issuer expires soon.
	ConditionCertificatesHealthy = "CertificatesHealthy"
	// ConditionDependenciesHealthy is False when something the mesh needs (cert-manager) is missing.
	ConditionDependenciesHealthy = "DependenciesHealthy"
	// ConditionInjectionReady is True when the injection webhook is configured and serving.
	ConditionInjectionReady = "InjectionReady"
	// ConditionUpgrading is True while workloads move from one revision to another.
	ConditionUpgrading = "Upgrading"
	// ConditionDegraded is True when part of the mesh that was working no longer is.
	ConditionDegraded = "Degraded"
	// ConditionNamespacesInjected is False when a namespace asks for a MeshRevision that does
	// not exist: its new pods start without a proxy. It does not affect Ready.
	ConditionNamespacesInjected = "NamespacesInjected"
	// ConditionHighlyAvailable is False when one voluntary disruption (a node drain) can stop
	// pod creation in meshed namespaces: a single control-plane replica with failurePolicy
	// Fail. It is a warning and does not affect Ready.
	ConditionHighlyAvailable = "HighlyAvailable"
	// ConditionPodSecurityCompatible is False when a meshed namespace enforces a Pod Security
	// level (baseline, restricted) that refuses injected pods; the message names the namespaces.
	ConditionPodSecurityCompatible = "PodSecurityCompatible"
	// ConditionDataPlaneSkew is True when proxies run an older release than the control plane:
	// reason ProxiesBehind within one minor release, ProxiesUnsupported beyond. The message says
	// how many. It does not affect Ready.
	ConditionDataPlaneSkew = "DataPlaneSkew"
	// ConditionDataPlaneConfigured is False when a connected proxy refuses (NACKs) the
	// configuration its control plane sent (reason ConfigRejected; the message says how many
	// and names one, the resource type and the proxy's error), True when none does, Unknown
	// while no control-plane pod reports. It does not affect Ready: a refusing proxy keeps
	// serving with the configuration it accepted before.
	ConditionDataPlaneConfigured = "DataPlaneConfigured"
	// ConditionGatewaysReady is True when every Gateway of a knit GatewayClass (those of
	// spec.gateways among them) is Programmed; False names each that is not, with its reason.
	// It does not affect Ready: an ingress that is not serving is not the mesh failing.
	ConditionGatewaysReady = "GatewaysReady"
)

// MeshConditionTypes lists every condition the Mesh reconciler maintains, in display order.
var MeshConditionTypes = []string{
	ConditionReady,
	ConditionReconciled,
	ConditionAvailable,
	ConditionControlPlaneReady,
	ConditionCertificatesReady,
	ConditionCertificatesHealthy,
	ConditionDependenciesHealthy,
	ConditionInjectionReady,
	ConditionUpgrading,
	ConditionDegraded,
	ConditionNamespacesInjected,
	ConditionHighlyAvailable,
	ConditionPodSecurityCompatible,
	ConditionDataPlaneSkew,
	ConditionDataPlaneConfigured,
	ConditionGatewaysReady,
}

// Condition reasons. CamelCase, as metav1.Condition requires.
const (
	// ReasonPending: the operator has seen the object but not yet determined this condition.
	ReasonPending = "Pending"
	// ReasonReconciled: the spec was applied.
	ReasonReconciled = "Reconciled"
	// ReasonReconcileFailed: applying the spec failed; the message says at which object.
	ReasonReconcileFailed = "ReconcileFailed"
	// ReasonUnsupportedVersion: spec.version is not a release this operator can run.
	ReasonUnsupportedVersion = "UnsupportedVersion"
	// ReasonIllegalUpgradePath: the change of spec.version skips a required step.
	ReasonIllegalUpgradePath = "IllegalUpgradePath"
	// ReasonCertManagerMissing: cert-manager's CRDs are not installed.
	ReasonCertManagerMissing = "CertManagerMissing"
	// ReasonCertManagerNotRunning: cert-manager's CRDs exist but its controller stopped.
	ReasonCertManagerNotRunning = "CertManagerNotRunning"
	// ReasonIssuerNotReady: the issuer the mesh signs with is not Ready.
	ReasonIssuerNotReady = "IssuerNotReady"
	// ReasonIssuerNotFound: spec.trust.issuerRef names an issuer that does not exist.
	ReasonIssuerNotFound = "IssuerNotFound"
	// ReasonCertificateExpiring: a root or issuer certificate expires within the threshold.
	ReasonCertificateExpiring = "CertificateExpiring"
	// ReasonRootRotating: a re-issued bootstrapped root is trusted but does not sign yet.
	ReasonRootRotating = "RootRotating"
	// ReasonSigningRootMoved: the bootstrapped CA Issuer signs with the re-issued root.
	ReasonSigningRootMoved = "SigningRootMoved"
	// ReasonDeploymentUnavailable: a control-plane Deployment has too few available pods.
	ReasonDeploymentUnavailable = "DeploymentUnavailable"
	// ReasonAllReady: every condition Ready depends on holds.
	ReasonAllReady = "AllReady"
	// ReasonNotReady: a condition Ready depends on does not hold; the message names it.
	ReasonNotReady = "NotReady"
	// ReasonUpToDate: every workload runs the desired version.
	ReasonUpToDate = "UpToDate"
	// ReasonAsExpected: nothing is wrong.
	ReasonAsExpected = "AsExpected"
	// ReasonRevisionsInFlight: more than one MeshRevision runs during an upgrade.
	ReasonRevisionsInFlight = "RevisionsInFlight"
	// ReasonExternalIssuer: the issuer is not cert-manager's own, so its readiness is not read.
	ReasonExternalIssuer = "ExternalIssuer"
	// ReasonCertificateNotReady: a cert-manager Certificate the mesh needs is not Ready.
	ReasonCertificateNotReady = "CertificateNotReady"
	// ReasonIssuerPublishesNoCA: the issuer returns no self-signed root CA with its certificates
	// (ca.crt), so there is no trust root to distribute.
	ReasonIssuerPublishesNoCA = "IssuerPublishesNoCA"
	// ReasonNameTaken: an object knit needs to create exists and is a person's; knit leaves it
	// alone and the message names it.
	ReasonNameTaken = "NameTaken"
	// ReasonSignerNotGranted: the operator may not grant the control plane approval for the
	// issuer's signer; the message names the signer and the RBAC to add.
	ReasonSignerNotGranted = "SignerNotGranted"
	// ReasonRevisionNotServing: the MeshRevision for spec.version cannot serve yet (its
	// control-plane Deployment is not Available or its webhook has no ready endpoint), so the
	// previous revision keeps injecting.
	ReasonRevisionNotServing = "RevisionNotServing"
	// ReasonWebhookNotServing: the injection webhook is configured but nothing answers behind
	// it (no ready endpoint in the control plane's Service).
	ReasonWebhookNotServing = "WebhookNotServing"
	// ReasonRevisionNotFound: a namespace is labelled knit.dev/rev for a MeshRevision that does
	// not exist.
	ReasonRevisionNotFound = "RevisionNotFound"
	// ReasonMovingWorkloads: meshed workloads are being restarted onto the active revision.
	ReasonMovingWorkloads = "MovingWorkloads"
	// ReasonUpgradePaused: spec.upgrade.paused holds the next batch.
	ReasonUpgradePaused = "UpgradePaused"
	// ReasonRetiringRevision: no pod uses a previous revision any more; it is removed after a
	// grace period.
	ReasonRetiringRevision = "RetiringRevision"
	// ReasonRevisionInUse: a previous revision still runs pods the upgrade does not move
	// (pinned workloads, bare pods, Jobs).
	ReasonRevisionInUse = "RevisionInUse"
	// ReasonRollingOutControlPlane: an InPlace upgrade rolls the control-plane Deployment.
	ReasonRollingOutControlPlane = "RollingOutControlPlane"
	// ReasonProxiesBehind: some proxies run a release older than the control plane, within one
	// minor release.
	ReasonProxiesBehind = "ProxiesBehind"
	// ReasonProxiesUnsupported: some proxies run a release more than one minor behind the
	// control plane.
	ReasonProxiesUnsupported = "ProxiesUnsupported"
	// ReasonSingleReplicaFailClosed: one control-plane replica with failurePolicy Fail.
	ReasonSingleReplicaFailClosed = "SingleReplicaFailClosed"
	// ReasonConfigRejected: a proxy refused (NACK) the configuration its control plane sent.
	ReasonConfigRejected = "ConfigRejected"
	// ReasonNoReports: no control-plane pod reports on its proxies (none runs, or its release
	// does not report).
	ReasonNoReports = "NoReports"
	// ReasonPodSecurityRefusesInjection: a meshed namespace enforces a Pod Security level that
	// refuses knit's init container.
	ReasonPodSecurityRefusesInjection = "PodSecurityRefusesInjection"
	// ReasonGatewayAPIMissing: spec.gateways is set but Gateway API's CRDs are not installed.
	ReasonGatewayAPIMissing = "GatewayAPIMissing"
)
