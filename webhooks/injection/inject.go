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

package injection

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Skip says why a pod is left alone; an empty Reason means it is injected.
type Skip struct{ Reason string }

// ShouldInject reports whether a pod joins the mesh, and if not, why.
func ShouldInject(pod *corev1.Pod) Skip {
	switch {
	case pod.Annotations[AnnotationInject] == InjectFalse || pod.Labels[AnnotationInject] == InjectFalse:
		return Skip{"the pod opts out with knit.dev/inject=false"}
	case pod.Spec.HostNetwork:
		return Skip{"the pod uses the host network, whose traffic cannot be captured per pod"}
	case slices.ContainsFunc(pod.Spec.InitContainers, named(ProxyContainerName)):
		return Skip{"the pod already has a knit-proxy"}
	}
	return Skip{}
}

// CheckInjectValue refuses a knit.dev/inject label or annotation whose value knit does not
// know: a pod marked "no" or "disabled" must not be meshed silently against its author's wish.
func CheckInjectValue(pod *corev1.Pod) error {
	for _, m := range []struct {
		kind   string
		values map[string]string
	}{{"label", pod.Labels}, {"annotation", pod.Annotations}} {
		if v, ok := m.values[AnnotationInject]; ok && v != InjectTrue && v != InjectFalse {
			return fmt.Errorf("%s %s: %q is not %q or %q; %q keeps the pod out of the mesh",
				m.kind, AnnotationInject, v, InjectTrue, InjectFalse, InjectFalse)
		}
	}
	return nil
}

func named(name string) func(corev1.Container) bool {
	return func(c corev1.Container) bool { return c.Name == name }
}

// additions is what injection adds to one pod, computed once and then either applied to the
// typed pod (Inject) or turned into a JSON patch against the pod's own JSON (Patch).
type additions struct {
	// initContainers (knit-init, knit-proxy) go before the pod's own init containers.
	initContainers []corev1.Container
	// volumes go after the pod's own volumes.
	volumes     []corev1.Volume
	annotations map[string]string
	// serviceAccountName is set when the pod names none.
	serviceAccountName string
	probes             []probeRewrite
}

// probeRewrite points one app probe at the proxy's admin port.
type probeRewrite struct {
	container int
	field     string // JSON name: readinessProbe, livenessProbe or startupProbe
	handler   corev1.ProbeHandler
}

// Inject adds the mesh to pod in place. The namespace is the pod's (a pod being created may not
// carry it yet). Overrides in annotations that cannot be parsed are an error naming the
// annotation, so a typo refuses the pod instead of silently running with defaults.
func Inject(pod *corev1.Pod, namespace string, cfg Config) error {
	if err := CheckInjectValue(pod); err != nil {
		return err
	}
	if ShouldInject(pod).Reason != "" {
		return nil
	}
	add, err := plan(pod, namespace, cfg)
	if err != nil {
		return err
	}
	add.apply(pod)
	return nil
}

// apply makes the additions to the typed pod.
func (a *additions) apply(pod *corev1.Pod) {
	if a.serviceAccountName != "" {
		pod.Spec.ServiceAccountName = a.serviceAccountName
	}
	for _, r := range a.probes {
		c := &pod.Spec.Containers[r.container]
		var probe *corev1.Probe
		switch r.field {
		case "readinessProbe":
			probe = c.ReadinessProbe
		case "livenessProbe":
			probe = c.LivenessProbe
		case "startupProbe":
			probe = c.StartupProbe
		}
		probe.ProbeHandler = *r.handler.DeepCopy()
	}
	pod.Spec.InitContainers = append(slices.Clone(a.initContainers), pod.Spec.InitContainers...)
	pod.Spec.Volumes = append(pod.Spec.Volumes, a.volumes...)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	maps.Copy(pod.Annotations, a.annotations)
}

// plan decides what injection adds to pod, refusing with a message what cannot work meshed.
func plan(pod *corev1.Pod, namespace string, cfg Config) (*additions, error) {
	if err := checkProxyUIDUnused(pod); err != nil {
		return nil, err
	}
	resources, err := proxyResources(pod.Annotations, cfg.Resources)
	if err != nil {
		return nil, err
	}
	capture, err := captureArgs(pod)
	if err != nil {
		return nil, err
	}
	logLevel := cfg.LogLevel
	if v, ok := pod.Annotations[AnnotationProxyLogLevel]; ok {
		if !slices.Contains([]string{"debug", "info", "warn", "error"}, v) {
			return nil, fmt.Errorf("annotation %s: %q is not one of debug, info, warn, error", AnnotationProxyLogLevel, v)
		}
		logLevel = v
	}
	probes, originals, err := rewriteProbes(pod)
	if err != nil {
		return nil, err
	}

	add := &additions{probes: probes, annotations: map[string]string{
		AnnotationInjectedRevision: cfg.Revision,
		AnnotationProxyVersion:     cfg.ProxyVersion,
	}}
	// The ServiceAccount admission plugin sets this before webhooks run; where it does not,
	// the projected token below would make the pod invalid, so name the default one here.
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
		add.serviceAccountName = sa
	}
	identity := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", cfg.TrustDomain, namespace, sa)

	initC := corev1.Container{
		Name:            InitContainerName,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/knit-proxy"},
		Args:            append([]string{"init"}, capture...),
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			// Setting iptables rules needs these two capabilities and nothing else.
			Capabilities:             &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
		},
	}
	proxy := corev1.Container{
		Name:            ProxyContainerName,
		Image:           cfg.ProxyImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/knit-proxy"},
		Args: []string{"run", "--sidecar",
			"--log-level=" + logLevel,
			"--admin-port=" + strconv.Itoa(int(AdminPort)),
			"--local-admin-port=" + strconv.Itoa(int(LocalAdminPort)),
			"--inbound-port=" + strconv.Itoa(int(InboundPort)),
			"--outbound-port=" + strconv.Itoa(int(OutboundPort)),
		},
		// A native sidecar: started before the app containers, stopped after them, and not
		// counted for Job completion.
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		// When the pod terminates, the kubelet runs this hook as it signals the app containers,
		// and signals the sidecar only once they have exited. The hook makes the proxy retire:
		// not ready, inbound clients asked to leave (Connection: close, GOAWAY) while it still
		// serves them, outbound untouched for the app's last requests. The hook returns at once,
		// so a Job's sidecar still stops as soon as the Job's containers are done.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"/knit-proxy", "drain", "--local-admin-port=" + strconv.Itoa(int(LocalAdminPort))},
		}}},
		Ports: []corev1.ContainerPort{{Name: "knit-admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP}},
		Env: []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_NAMESPACE", "metadata.namespace"),
			fieldEnv("POD_IP", "status.podIP"),
			{Name: "KNIT_IDENTITY", Value: identity},
			{Name: "KNIT_REVISION", Value: cfg.Revision},
			{Name: "KNIT_CONTROL_PLANE", Value: cfg.ControlPlane},
			{Name: "KNIT_TOKEN_FILE", Value: TokenMountPath + "/token"},
			{Name: "KNIT_TRUST_BUNDLE", Value: TrustMountPath + "/" + TrustBundleKey},
		},
		Resources: resources,
		// The app starts only once the proxy is ready, so its first connections are meshed.
		StartupProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(AdminPort)}},
			PeriodSeconds:    1,
			FailureThreshold: 120,
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(AdminPort)}},
			PeriodSeconds: 5,
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(ProxyUID),
			RunAsGroup:               ptr.To(ProxyUID),
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: TokenVolumeName, MountPath: TokenMountPath, ReadOnly: true},
			{Name: TrustVolumeName, MountPath: TrustMountPath, ReadOnly: true},
		},
	}
	if cfg.MTLSMode != "" {
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "KNIT_MTLS_MODE", Value: cfg.MTLSMode})
	}
	proxy.Env = append(proxy.Env, ObservabilityEnv(cfg.Observability(), tracingServiceName(pod, namespace))...)
	if len(probes) > 0 {
		raw, err := json.Marshal(originals)
		if err != nil {
			return nil, fmt.Errorf("encoding app probes: %w", err)
		}
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "KNIT_APP_PROBES", Value: string(raw)})
	}

	add.initContainers = []corev1.Container{initC, proxy}
	add.volumes = []corev1.Volume{
		{Name: TokenVolumeName, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: TokenAudience, ExpirationSeconds: ptr.To(tokenExpirySecs), Path: "token",
			}}},
		}}},
		{Name: TrustVolumeName, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: TrustBundleName},
		}}},
	}
	return add, nil
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// proxyResources applies the per-pod overrides to the mesh's proxy resources.
func proxyResources(ann map[string]string, base corev1.ResourceRequirements) (corev1.ResourceRequirements, error) {
	out := *base.DeepCopy()
	for _, o := range []struct {
		annotation string
		list       *corev1.ResourceList
		name       corev1.ResourceName
	}{
		{AnnotationProxyCPU, &out.Requests, corev1.ResourceCPU},
		{AnnotationProxyMemory, &out.Requests, corev1.ResourceMemory},
		{AnnotationProxyCPULimit, &out.Limits, corev1.ResourceCPU},
		{AnnotationProxyMemoryLimit, &out.Limits, corev1.ResourceMemory},
	} {
		v, ok := ann[o.annotation]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return out, fmt.Errorf("annotation %s: %q is not a quantity such as 100m or 64Mi", o.annotation, v)
		}
		if *o.list == nil {
			*o.list = corev1.ResourceList{}
		}
		(*o.list)[o.name] = q
	}
	return out, nil
}

// captureArgs are the arguments of `knit-proxy init`: what to redirect and what to leave alone.
func captureArgs(pod *corev1.Pod) ([]string, error) {
	args := []string{
		"--proxy-uid=" + strconv.FormatInt(ProxyUID, 10),
		"--inbound-port=" + strconv.Itoa(int(InboundPort)),
		"--outbound-port=" + strconv.Itoa(int(OutboundPort)),
	}
	// The proxy's own admin port is never captured: the kubelet probes it directly.
	inbound := []string{strconv.Itoa(int(AdminPort))}
	for _, a := range []struct {
		annotation, flag string
		parse            func(string) error
		extra            []string
	}{
		{AnnotationExcludeInboundPorts, "--exclude-inbound-ports=", checkPort, inbound},
		{AnnotationExcludeOutboundPorts, "--exclude-outbound-ports=", checkPort, nil},
		{AnnotationExcludeOutboundCIDRs, "--exclude-outbound-cidrs=", checkCIDR, nil},
	} {
		values := slices.Clone(a.extra)
		if v := pod.Annotations[a.annotation]; v != "" {
			for _, item := range strings.Split(v, ",") {
				item = strings.TrimSpace(item)
				if err := a.parse(item); err != nil {
					return nil, fmt.Errorf("annotation %s: %w", a.annotation, err)
				}
				values = append(values, item)
			}
		}
		if len(values) > 0 {
			args = append(args, a.flag+strings.Join(values, ","))
		}
	}
	return args, nil
}

func checkPort(s string) error {
	if p, err := strconv.Atoi(s); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q is not a port between 1 and 65535", s)
	}
	return nil
}

func checkCIDR(s string) error {
	if _, _, err := net.ParseCIDR(s); err != nil {
		return fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
	}
	return nil
}

// rewriteProbes points the app containers' HTTP, TCP and gRPC probes at the proxy's admin port,
// which the capture leaves alone, and returns the original handlers by their new paths: the
// proxy checks the app on the kubelet's behalf from inside the pod, so probes keep working
// when inbound traffic must be mutual TLS. The pod itself is not changed.
func rewriteProbes(pod *corev1.Pod) ([]probeRewrite, map[string]corev1.ProbeHandler, error) {
	var rewrites []probeRewrite
	originals := map[string]corev1.ProbeHandler{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		for _, p := range []struct {
			kind, field string
			probe       *corev1.Probe
		}{
			{"readiness", "readinessProbe", c.ReadinessProbe},
			{"liveness", "livenessProbe", c.LivenessProbe},
			{"startup", "startupProbe", c.StartupProbe},
		} {
			if p.probe == nil || p.probe.Exec != nil {
				continue // exec probes run inside the container: nothing to reroute
			}
			original := *p.probe.ProbeHandler.DeepCopy()
			if err := resolveNamedPort(&original, c); err != nil {
				return nil, nil, fmt.Errorf("container %s %s probe: %w", c.Name, p.kind, err)
			}
			path := appHealthPrefix + c.Name + "/" + p.kind
			originals[path] = original
			rewrites = append(rewrites, probeRewrite{container: i, field: p.field, handler: corev1.ProbeHandler{
				HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(AdminPort)},
			}})
		}
	}
	return rewrites, originals, nil
}

// checkProxyUIDUnused refuses a pod with a container that runs as the proxy's UID: the capture
// leaves that UID's traffic alone, so the container would silently bypass the mesh.
func checkProxyUIDUnused(pod *corev1.Pod) error {
	var podUID *int64
	if pod.Spec.SecurityContext != nil {
		podUID = pod.Spec.SecurityContext.RunAsUser
	}
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		uid := podUID
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			uid = c.SecurityContext.RunAsUser
		}
		if uid != nil && *uid == ProxyUID {
			return fmt.Errorf("container %s runs as UID %d, the UID of knit-proxy, whose traffic is never captured: "+
				"its traffic would bypass the mesh; run it as another UID (securityContext.runAsUser), "+
				"or keep the pod out of the mesh with the annotation %s=%s", c.Name, ProxyUID, AnnotationInject, InjectFalse)
		}
	}
	return nil
}

// resolveNamedPort turns a named probe port into its number: the proxy does not see the spec.
func resolveNamedPort(h *corev1.ProbeHandler, c *corev1.Container) error {
	var port *intstr.IntOrString
	switch {
	case h.HTTPGet != nil:
		port = &h.HTTPGet.Port
	case h.TCPSocket != nil:
		port = &h.TCPSocket.Port
	default:
		return nil
	}
	if port.Type == intstr.Int {
		return nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			*port = intstr.FromInt32(p.ContainerPort)
			return nil
		}
	}
	return fmt.Errorf("port %q is not a port of the container", port.StrVal)
}

// tracingServiceName names the workload in its spans as Istio does: its app label (the
// recommended one first), else its ServiceAccount, then ".namespace".
func tracingServiceName(pod *corev1.Pod, namespace string) string {
	name := cmp.Or(pod.Labels["app.kubernetes.io/name"], pod.Labels["app"], pod.Spec.ServiceAccountName, "default")
	return name + "." + namespace
}

// Observability is what a proxy reports, as the Mesh's spec.observability says.
type Observability struct {
	AccessLogFormat        string // Off, JSON or Text
	TracingEndpoint        string // OTLP/gRPC host:port; empty exports no spans
	TracingSamplingPercent int32
	MetricsDisabled        bool
}

// Observability is the injected proxies' part of cfg.
func (cfg Config) Observability() Observability {
	return Observability{AccessLogFormat: cfg.AccessLogFormat, TracingEndpoint: cfg.TracingEndpoint,
		TracingSamplingPercent: cfg.TracingSamplingPercent, MetricsDisabled: cfg.MetricsDisabled}
}

// ObservabilityEnv is how knit-proxy, sidecar or gateway, learns o: its environment (read by
// cmd/knit-proxy's observabilityFromEnv). serviceName names the workload in its spans.
func ObservabilityEnv(o Observability, serviceName string) []corev1.EnvVar {
	env := []corev1.EnvVar{{Name: "KNIT_ACCESS_LOG", Value: o.AccessLogFormat}}
	if o.TracingEndpoint != "" {
		env = append(env,
			corev1.EnvVar{Name: "KNIT_TRACING_ENDPOINT", Value: o.TracingEndpoint},
			corev1.EnvVar{Name: "KNIT_TRACING_SAMPLING_PERCENT", Value: strconv.Itoa(int(o.TracingSamplingPercent))},
			corev1.EnvVar{Name: "KNIT_TRACING_SERVICE_NAME", Value: serviceName})
	}
	if o.MetricsDisabled {
		env = append(env, corev1.EnvVar{Name: "KNIT_METRICS", Value: "off"})
	}
	return env
}
