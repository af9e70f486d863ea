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

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
	"github.com/knit-mesh/knit/internal/gateway"
	"github.com/knit-mesh/knit/webhooks/injection"
)

// gatewayRuntime is what a Gateway's proxies need from the mesh: the active revision, its proxy
// image, the address of its control plane, and what their workload identity needs (the trust
// domain their SPIFFE ID is in, and the Mesh's mtls.mode for when they hold no certificate).
type gatewayRuntime struct {
	Revision     string
	ProxyImage   string
	ControlPlane string // host:port of the revision's xDS server
	TrustDomain  string
	MTLSMode     meshv1.MTLSMode
	// Observability is the Mesh's, as for sidecars: access logs, spans, metrics.
	Observability injection.Observability
}

// gatewayDrainSeconds is how long a gateway pod has to finish its requests after SIGTERM; the
// proxy's own drain timeout is below it.
const gatewayDrainSeconds = 30

// gatewayLabels are on every object that runs a Gateway.
func gatewayLabels(gw *gatewayv1.Gateway) map[string]string {
	return map[string]string{
		meshv1.LabelPartOf:       meshv1.PartOfValue,
		meshv1.LabelComponent:    "gateway",
		gateway.LabelGatewayName: gw.Name,
	}
}

// gatewaySelector selects a Gateway's pods; it never changes (selectors are immutable).
func gatewaySelector(gw *gatewayv1.Gateway) map[string]string {
	return map[string]string{gateway.LabelGatewayName: gw.Name, "app": gateway.ResourceName(gw.Name)}
}

// servedPorts are the distinct ports of the listeners knit serves (or will once their
// certificates resolve), in listener order.
func servedPorts(listeners []gateway.Listener) []int32 {
	var out []int32
	seen := map[int32]bool{}
	for _, l := range listeners {
		if l.Exposed() && !seen[int32(l.Port)] {
			seen[int32(l.Port)] = true
			out = append(out, int32(l.Port))
		}
	}
	return out
}

func desiredGatewayDeployment(gw *gatewayv1.Gateway, rt gatewayRuntime, p gatewayParameters, ports []int32) appsv1.DeploymentSpec {
	name := gateway.ResourceName(gw.Name)
	// The proxies run as the Gateway's own ServiceAccount and get its workload identity, as a
	// sidecar gets its pod's: they originate mutual TLS to meshed backends with it.
	identity := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", rt.TrustDomain, gw.Namespace, name)
	var containerPorts []corev1.ContainerPort
	for _, port := range ports {
		containerPorts = append(containerPorts, corev1.ContainerPort{Name: portName(port), ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
	containerPorts = append(containerPorts, corev1.ContainerPort{Name: "knit-admin", ContainerPort: gateway.ProbePort, Protocol: corev1.ProtocolTCP})
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(gateway.ProbePort), Scheme: corev1.URISchemeHTTP}},
			TimeoutSeconds:   1,
			PeriodSeconds:    2,
			SuccessThreshold: 1,
			FailureThreshold: 3,
		}
	}
	spec := appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: gatewaySelector(gw)},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{
				// Gateway pods get no sidecar, even in a meshed namespace: the gateway is the proxy.
				Labels: withLabels(withLabels(gatewayLabels(gw), gatewaySelector(gw)), map[string]string{meshv1.LabelInject: injection.InjectFalse}),
			},
			Spec: corev1.PodSpec{
				ServiceAccountName:            name,
				TerminationGracePeriodSeconds: ptr.To[int64](gatewayDrainSeconds + 5),
				SecurityContext: &corev1.PodSecurityContext{
					RunAsNonRoot:   ptr.To(true),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					// Listeners on ports below 1024 (80, 443) without root or capabilities; a
					// namespaced sysctl that Pod Security "restricted" allows.
					Sysctls: []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "0"}},
				},
				Containers: []corev1.Container{{
					Name:            injection.ProxyContainerName,
					Image:           rt.ProxyImage,
					ImagePullPolicy: corev1.PullIfNotPresent,
					Command:         []string{"/knit-proxy"},
					Args: []string{"run", "--gateway",
						"--admin-port=" + strconv.Itoa(gateway.ProbePort),
						"--local-admin-port=" + strconv.Itoa(gateway.AdminPort),
					},
					Env: append([]corev1.EnvVar{
						envFromField("POD_NAME", "metadata.name"),
						envFromField("POD_NAMESPACE", "metadata.namespace"),
						envFromField("POD_IP", "status.podIP"),
						{Name: "KNIT_GATEWAY", Value: gw.Namespace + "/" + gw.Name},
						{Name: "KNIT_REVISION", Value: rt.Revision},
						{Name: "KNIT_CONTROL_PLANE", Value: rt.ControlPlane},
						{Name: "KNIT_TOKEN_FILE", Value: injection.TokenMountPath + "/token"},
						{Name: "KNIT_TRUST_BUNDLE", Value: injection.TrustMountPath + "/" + injection.TrustBundleKey},
						{Name: "KNIT_IDENTITY", Value: identity},
						{Name: "KNIT_MTLS_MODE", Value: string(rt.MTLSMode)},
					}, injection.ObservabilityEnv(rt.Observability, gw.Name+"."+gw.Namespace)...),
					Ports:          containerPorts,
					ReadinessProbe: probe("/ready"),
					LivenessProbe:  probe("/live"),
					Resources:      p.Resources,
					SecurityContext: &corev1.SecurityContext{
						RunAsUser:                ptr.To(injection.ProxyUID),
						RunAsGroup:               ptr.To(injection.ProxyUID),
						RunAsNonRoot:             ptr.To(true),
						AllowPrivilegeEscalation: ptr.To(false),
						ReadOnlyRootFilesystem:   ptr.To(true),
						Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					},
					VolumeMounts: []corev1.VolumeMount{
						{Name: injection.TokenVolumeName, MountPath: injection.TokenMountPath, ReadOnly: true},
						{Name: injection.TrustVolumeName, MountPath: injection.TrustMountPath, ReadOnly: true},
					},
				}},
				Volumes: []corev1.Volume{
					{Name: injection.TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
						Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
							Audience: injection.TokenAudience, ExpirationSeconds: ptr.To[int64](3600), Path: "token",
						}}},
					}}},
					{Name: injection.TrustVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: TrustBundleName},
					}}},
				},
			},
		},
	}
	if p.Autoscale == nil {
		spec.Replicas = ptr.To(p.Replicas)
	}
	return spec
}

// portName names a listener port in the container and the Service.
func portName(port int32) string { return fmt.Sprintf("gw-%d", port) }

func desiredGatewayService(gw *gatewayv1.Gateway, p gatewayParameters, ports []int32) corev1.ServiceSpec {
	spec := corev1.ServiceSpec{Type: p.ServiceType, Selector: gatewaySelector(gw)}
	for _, port := range ports {
		spec.Ports = append(spec.Ports, corev1.ServicePort{
			Name: portName(port), Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP,
		})
	}
	return spec
}

// keepNodePorts copies the node ports the API server allocated into desired, so they do not
// count as drift (a number in desired is always compared).
func keepNodePorts(desired, live *corev1.ServiceSpec) {
	if desired.Type == corev1.ServiceTypeClusterIP {
		return
	}
	for i := range desired.Ports {
		for _, lp := range live.Ports {
			if lp.Port == desired.Ports[i].Port {
				desired.Ports[i].NodePort = lp.NodePort
			}
		}
	}
}

func desiredGatewayPDB(gw *gatewayv1.Gateway) policyv1.PodDisruptionBudgetSpec {
	return policyv1.PodDisruptionBudgetSpec{
		MaxUnavailable: ptr.To(intstr.FromInt32(1)),
		Selector:       &metav1.LabelSelector{MatchLabels: gatewaySelector(gw)},
	}
}

func desiredGatewayHPA(gw *gatewayv1.Gateway, a gatewayAutoscale) autoscalingv2.HorizontalPodAutoscalerSpec {
	return autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: gateway.ResourceName(gw.Name)},
		MinReplicas:    ptr.To(a.Min),
		MaxReplicas:    a.Max,
		Metrics: []autoscalingv2.MetricSpec{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{
				Name:   corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(a.TargetCPU)},
			},
		}},
	}
}

func envFromField(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}
