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

import "fmt"

// Namespace is what injection needs to know about the namespace a pod is created in.
type Namespace struct {
	Name   string
	Labels map[string]string
	// HasTrustBundle says whether ConfigMap knit-trust-bundle exists in the namespace. The
	// proxy mounts it, so a pod injected without it would wait in ContainerCreating.
	HasTrustBundle bool
}

// LabelPodSecurityEnforce is Pod Security Admission's label for the level a namespace enforces.
const LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"

// PodSecurityRefuses says whether a namespace's enforced Pod Security level refuses injected
// pods, and returns that level. knit-init needs NET_ADMIN and NET_RAW and runs as root, which
// only "privileged" allows; a namespace without the label gets the cluster's default, which is
// privileged unless the API server's admission configuration says otherwise. Pod Security
// Admission reads a value it does not know as "restricted", and so does this.
func PodSecurityRefuses(namespaceLabels map[string]string) (level string, refuses bool) {
	level, ok := namespaceLabels[LabelPodSecurityEnforce]
	if !ok || level == "privileged" {
		return level, false
	}
	return level, true
}

// CheckNamespace refuses, with a message that says what to do, a pod that would be injected
// into a namespace where it cannot run meshed.
func CheckNamespace(ns Namespace) error {
	if level, refuses := PodSecurityRefuses(ns.Labels); refuses {
		return fmt.Errorf("namespace %s enforces Pod Security level %q (label %s), which refuses the injected "+
			"init container %s (it sets the capture rules as root with NET_ADMIN and NET_RAW): "+
			"label the namespace %s=privileged, or keep the pod out of the mesh with the annotation %s=%s",
			ns.Name, level, LabelPodSecurityEnforce, InitContainerName, LabelPodSecurityEnforce, AnnotationInject, InjectFalse)
	}
	if !ns.HasTrustBundle {
		return fmt.Errorf("namespace %s has no ConfigMap %s yet, which the proxy mounts: the operator writes it "+
			"into each meshed namespace once the mesh's trust root exists (kubectl describe mesh default says "+
			"what it waits for); create the pod again then (Deployments, Jobs and other controllers retry by themselves)",
			ns.Name, TrustBundleName)
	}
	return nil
}
