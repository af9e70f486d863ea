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
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseGatewayParameters(t *testing.T) {
	p, err := parseGatewayParameters(nil)
	if err != nil || p.Replicas != 1 || p.ServiceType != corev1.ServiceTypeClusterIP || p.Autoscale != nil {
		t.Fatalf("defaults = %+v, %v; want 1 replica, ClusterIP, no autoscaling", p, err)
	}
	p, err = parseGatewayParameters(map[string]string{"replicas": "3", "serviceType": "LoadBalancer", "maxReplicas": "6",
		"resources": `{"limits":{"memory":"64Mi"}}`})
	if err != nil || p.Replicas != 3 || p.ServiceType != corev1.ServiceTypeLoadBalancer || p.Resources.Limits.Memory().String() != "64Mi" ||
		p.Autoscale == nil || *p.Autoscale != (gatewayAutoscale{Min: 1, Max: 6, TargetCPU: 80}) {
		t.Fatalf("parsed = %+v (autoscale %+v), %v", p, p.Autoscale, err)
	}
	for key, bad := range map[string]map[string]string{
		"replicas":      {"replicas": "0"},
		"serviceType":   {"serviceType": "ExternalName"},
		"resources":     {"resources": "{"},
		"maxReplicas":   {"maxReplicas": "many"},
		"minReplicas (": {"maxReplicas": "2", "minReplicas": "3"},
		"targetCPU":     {"maxReplicas": "2", "targetCPUUtilizationPercentage": "0"},
	} {
		if _, err := parseGatewayParameters(bad); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%v: error %v, want one naming %s", bad, err, key)
		}
	}
}
