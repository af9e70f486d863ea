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
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Keys of a Gateway's parameters ConfigMap (spec.infrastructure.parametersRef, group "", kind
// ConfigMap, in the Gateway's namespace). Every key is optional.
const (
	ParamReplicas    = "replicas"    // Deployment replicas (default 1); ignored with maxReplicas
	ParamServiceType = "serviceType" // ClusterIP (default), NodePort or LoadBalancer
	ParamResources   = "resources"   // the proxy container's resources, as JSON
	ParamMinReplicas = "minReplicas" // with maxReplicas: a HorizontalPodAutoscaler (default 1)
	ParamMaxReplicas = "maxReplicas" // set: the gateway is autoscaled between min and max
	// ParamTargetCPU is the HPA's target average CPU utilisation in percent (default 80).
	ParamTargetCPU = "targetCPUUtilizationPercentage"
)

// gatewayParameters is how a Gateway's proxies run.
type gatewayParameters struct {
	Replicas    int32
	ServiceType corev1.ServiceType
	Resources   corev1.ResourceRequirements
	// Autoscale is set when maxReplicas is: an HPA owns the replica count.
	Autoscale *gatewayAutoscale
}

type gatewayAutoscale struct {
	Min, Max, TargetCPU int32
}

// defaultGatewayParameters: one replica and a ClusterIP Service. ClusterIP rather than Gateway
// API's usual LoadBalancer: it has an address at once on every cluster (a LoadBalancer without a
// load-balancer controller never gets one), and a Gateway that should be reachable from outside
// asks for LoadBalancer or NodePort in its parameters.
func defaultGatewayParameters() gatewayParameters {
	return gatewayParameters{Replicas: 1, ServiceType: corev1.ServiceTypeClusterIP}
}

// parseGatewayParameters reads a parameters ConfigMap; an error names the bad key.
func parseGatewayParameters(data map[string]string) (gatewayParameters, error) {
	p := defaultGatewayParameters()
	intKey := func(key string, min, max int32, into *int32) error {
		v, ok := data[key]
		if !ok {
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || int32(n) < min || int32(n) > max {
			return fmt.Errorf("%s: %q is not a whole number from %d to %d", key, v, min, max)
		}
		*into = int32(n)
		return nil
	}
	if err := intKey(ParamReplicas, 1, 100, &p.Replicas); err != nil {
		return p, err
	}
	if v, ok := data[ParamServiceType]; ok {
		switch t := corev1.ServiceType(v); t {
		case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
			p.ServiceType = t
		default:
			return p, fmt.Errorf("%s: %q is not ClusterIP, NodePort or LoadBalancer", ParamServiceType, v)
		}
	}
	if v, ok := data[ParamResources]; ok {
		if err := json.Unmarshal([]byte(v), &p.Resources); err != nil {
			return p, fmt.Errorf("%s: not a JSON ResourceRequirements: %w", ParamResources, err)
		}
	}
	if _, ok := data[ParamMaxReplicas]; ok {
		a := gatewayAutoscale{Min: 1, TargetCPU: 80}
		for _, e := range []error{
			intKey(ParamMaxReplicas, 1, 100, &a.Max),
			intKey(ParamMinReplicas, 1, 100, &a.Min),
			intKey(ParamTargetCPU, 1, 100, &a.TargetCPU),
		} {
			if e != nil {
				return p, e
			}
		}
		if a.Min > a.Max {
			return p, fmt.Errorf("%s (%d) is above %s (%d)", ParamMinReplicas, a.Min, ParamMaxReplicas, a.Max)
		}
		p.Autoscale = &a
	}
	return p, nil
}

// parametersConfigMap returns the name of the ConfigMap a Gateway's parametersRef names, or an
// error when it names another kind.
func parametersConfigMap(gw *gatewayv1.Gateway) (string, error) {
	if gw.Spec.Infrastructure == nil || gw.Spec.Infrastructure.ParametersRef == nil {
		return "", nil
	}
	ref := gw.Spec.Infrastructure.ParametersRef
	if ref.Group != "" || ref.Kind != "ConfigMap" {
		return "", fmt.Errorf("spec.infrastructure.parametersRef: knit reads parameters from a ConfigMap (group \"\", kind ConfigMap), not %s/%s", ref.Group, ref.Kind)
	}
	return ref.Name, nil
}
