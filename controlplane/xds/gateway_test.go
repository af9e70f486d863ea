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
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

func gatewayNode(id, gw string) *corev3.Node {
	n := &corev3.Node{Id: id}
	if gw != "" {
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{metadataGateway: structpb.NewStringValue(gw)}}
	}
	return n
}

func TestOnlyAGatewaysOwnPodsReadItsSnapshot(t *testing.T) {
	pod := Identity{Namespace: "infra", Pod: "edge-knit-abc", ServiceAccount: "edge-knit"}
	for _, tc := range []struct {
		name, gateway string
		code          codes.Code
		key           string
	}{
		{"a sidecar reads its namespace", "", codes.OK, "infra"},
		{"the Gateway's own pod", "infra/edge", codes.OK, "gateway/infra/edge"},
		{"another Gateway of the namespace", "infra/other", codes.PermissionDenied, ""},
		{"a Gateway of another namespace", "shop/edge", codes.PermissionDenied, ""},
		{"not namespace/name", "edge", codes.InvalidArgument, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := gatewayNode(pod.NodeID(), tc.gateway)
			err := checkGateway(pod, node)
			if status.Code(err) != tc.code {
				t.Fatalf("checkGateway = %v, want code %s", err, tc.code)
			}
			if err == nil {
				if got := snapshotKey(node); got != tc.key {
					t.Errorf("snapshot key %q, want %q", got, tc.key)
				}
			}
		})
	}
}
