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

// Package webhooks holds knit's admission webhooks: sidecar injection into meshed pods. The
// decisions live in package injection; this package speaks AdmissionReview.
package webhooks

import (
	"context"
	"net/http"

	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/knit-mesh/knit/webhooks/injection"
)

// InjectPath is where the injection webhook is served.
const InjectPath = "/inject"

// PodInjector answers the API server's admission requests for pods with the patch that puts
// them in the mesh.
type PodInjector struct {
	// Config returns the current injection settings of this revision.
	Config func() (injection.Config, error)
	// Namespaces says what injection needs to know about the pod's namespace: its Pod Security
	// level and whether its trust bundle exists.
	Namespaces NamespaceReader
}

var _ admission.Handler = &PodInjector{}

// Handle injects a pod being created. A pod that opts out, or is already injected, is allowed
// unchanged. A pod that could not run meshed is refused with a message that says why and what to
// do: an override annotation that cannot be parsed, a knit.dev/inject value knit does not know,
// a container running as the proxy's UID, a namespace whose Pod Security level refuses the
// injected init container, or a namespace whose trust bundle does not exist yet.
func (p *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	logger := log.FromContext(ctx).WithValues("namespace", req.Namespace, "name", req.Name)
	if req.UID == "" {
		return admission.Errored(http.StatusBadRequest, errNoRequest)
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return admission.Allowed("knit injects pods only")
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, errEmptyObject)
	}
	cfg, err := p.Config()
	if err != nil {
		return admission.Errored(http.StatusServiceUnavailable, err)
	}
	if p.Namespaces == nil {
		return admission.Errored(http.StatusInternalServerError, errNoNamespaces)
	}
	ns, err := p.Namespaces.Namespace(ctx, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusServiceUnavailable, err)
	}
	ops, err := injection.Patch(req.Object.Raw, ns, cfg)
	if err != nil {
		logger.Info("pod refused", "reason", err.Error())
		return admission.Denied("knit-proxy injection: " + err.Error())
	}
	if len(ops) == 0 {
		return admission.Allowed("not injected")
	}
	logger.V(1).Info("injected", "revision", cfg.Revision)
	return admission.Patched("knit-proxy injected by revision "+cfg.Revision, ops...)
}

// NewInjectionWebhook is the HTTP handler for InjectPath: controller-runtime's admission webhook,
// which decodes the AdmissionReview, bounds the request size and answers malformed requests
// with an error instead of failing.
func NewInjectionWebhook(p *PodInjector) *admission.Webhook {
	return &admission.Webhook{Handler: p}
}

type webhookError string

func (e webhookError) Error() string { return string(e) }

const (
	errNoRequest    = webhookError("the AdmissionReview carries no request")
	errEmptyObject  = webhookError("the AdmissionReview carries no object")
	errNoNamespaces = webhookError("the injection webhook was started without a namespace reader")
)
