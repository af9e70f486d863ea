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
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/knit-mesh/knit/controlplane/translate"
	"github.com/knit-mesh/knit/internal/gateway"
)

// A gateway proxy (knit-proxy run --gateway) names its Gateway in node.metadata.GATEWAY
// ("<namespace>/<name>") and gets that Gateway's snapshot, keyed "gateway/<namespace>/<name>";
// every other proxy gets its namespace's.
const (
	metadataGateway  = "GATEWAY"
	gatewayKeyPrefix = "gateway/"
)

// snapshotKey is the snapshot a node reads. Its GATEWAY metadata has been checked
// (checkGateway) before the cache sees the node.
func snapshotKey(node *corev3.Node) string {
	if gw := nodeMeta(node, metadataGateway); gw != "" {
		return gatewayKeyPrefix + gw
	}
	ns, _, _ := strings.Cut(node.GetId(), "/")
	return ns
}

// checkGateway lets a pod read a Gateway's configuration only when it runs as that Gateway's
// ServiceAccount ("<gateway>-knit", which the operator makes) in the Gateway's namespace.
func checkGateway(id Identity, node *corev3.Node) error {
	gw := nodeMeta(node, metadataGateway)
	if gw == "" {
		return nil
	}
	ns, name, ok := strings.Cut(gw, "/")
	if !ok || ns == "" || name == "" {
		return status.Errorf(codes.InvalidArgument, "node.metadata.GATEWAY %q is not <namespace>/<name>", gw)
	}
	if ns != id.Namespace || id.ServiceAccount != gateway.ResourceName(name) {
		return status.Errorf(codes.PermissionDenied, "node.metadata.GATEWAY %q: only pods of ServiceAccount %s in namespace %s read that Gateway's configuration (this pod: %s/%s)",
			gw, gateway.ResourceName(name), ns, id.Namespace, id.ServiceAccount)
	}
	return nil
}

// resourcesFor is what the snapshot of key holds: a Gateway's listeners and routes (nothing
// when knit does not run that Gateway), or a namespace's view.
func (p *publisher) resourcesFor(key string) translate.Resources {
	if gw, ok := strings.CutPrefix(key, gatewayKeyPrefix); ok {
		ns, name, _ := strings.Cut(gw, "/")
		res, _ := p.model.GatewayResources(translate.GatewayKey{Namespace: ns, Name: name})
		return res
	}
	return p.model.Resources(key)
}

// knitGateways lists the Gateways whose GatewayClass knit serves.
func (b *builder) knitGateways(ctx context.Context) ([]gwv1.Gateway, error) {
	if !b.gateways || !b.gatewayClasses {
		return nil, nil
	}
	var classes gwv1.GatewayClassList
	if err := b.reader.List(ctx, &classes); err != nil {
		return nil, fmt.Errorf("listing GatewayClasses: %w", err)
	}
	ours := map[gwv1.ObjectName]bool{}
	for _, c := range classes.Items {
		ours[gwv1.ObjectName(c.Name)] = c.Spec.ControllerName == gateway.ControllerName
	}
	var list gwv1.GatewayList
	if err := b.reader.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing Gateways: %w", err)
	}
	var out []gwv1.Gateway
	for _, gw := range list.Items {
		if ours[gw.Spec.GatewayClassName] && gw.DeletionTimestamp.IsZero() {
			out = append(out, gw)
		}
	}
	return out, nil
}

// ownParent says whether a route parent status is knit's to write: the mesh's (Service
// parents) or the gateway controller's (Gateway parents).
func ownParent(p gwv1.RouteParentStatus) bool {
	return p.ControllerName == translate.ControllerName || p.ControllerName == gateway.ControllerName
}
