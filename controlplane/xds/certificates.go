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

package xds

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/controlplane/translate"
	"github.com/knit-mesh/knit/internal/gateway"
)

// writeCertificateVerdicts records, on every knit Gateway with HTTPS listeners, the verdict on
// their certificateRefs (gateway.AnnotationCertificates) for the operator, which writes the
// Gateway's status; it removes the annotation from Gateways without HTTPS listeners. Only
// Gateways whose annotation changes are written (Update: a conflict retries on the next change).
func writeCertificateVerdicts(ctx context.Context, log logr.Logger, c client.Client, gateways []gwv1.Gateway, verdicts map[translate.GatewayKey]gateway.CertificateVerdicts) error {
	var errs []error
	for i := range gateways {
		gw := &gateways[i]
		v := verdicts[translate.GatewayKey{Namespace: gw.Namespace, Name: gw.Name}]
		want, has := "", len(v.Listeners) > 0
		if has {
			want = v.Encode()
		}
		cur, had := gw.Annotations[gateway.AnnotationCertificates]
		if had == has && cur == want {
			continue
		}
		u := gw.DeepCopy()
		if has {
			if u.Annotations == nil {
				u.Annotations = map[string]string{}
			}
			u.Annotations[gateway.AnnotationCertificates] = want
		} else {
			delete(u.Annotations, gateway.AnnotationCertificates)
		}
		err := c.Update(ctx, u)
		switch {
		case err == nil:
			log.V(1).Info("certificate verdicts written", "gateway", gw.Namespace+"/"+gw.Name)
		case apierrors.IsNotFound(err):
		default:
			errs = append(errs, fmt.Errorf("recording the certificate verdicts of Gateway %s/%s: %w", gw.Namespace, gw.Name, err))
		}
	}
	return errors.Join(errs...)
}
