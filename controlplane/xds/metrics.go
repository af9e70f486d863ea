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
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the xDS server's Prometheus series.
type metrics struct {
	nacks     *prometheus.CounterVec
	responses *prometheus.CounterVec
	refused   *prometheus.CounterVec
	connected prometheus.Gauge
	builds    prometheus.Counter
	// translatedServices counts Services per translation: all of them when Services or routes
	// changed, only those whose endpoints changed otherwise.
	translatedServices prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_xds_nacks_total",
			Help: "xDS responses a proxy refused (NACK), by resource type.",
		}, []string{"type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_xds_responses_total",
			Help: "xDS responses sent to proxies, by resource type.",
		}, []string{"type"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_xds_refused_streams_total",
			Help: "xDS streams refused before any configuration was sent, by gRPC code.",
		}, []string{"code"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "knit_xds_connected_proxies",
			Help: "Authenticated xDS streams open now.",
		}),
		builds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "knit_xds_translations_total",
			Help: "Translations of the cluster's Services and routes into xDS resources.",
		}),
		translatedServices: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "knit_xds_translated_services_total",
			Help: "Services translated into xDS resources: every Service when Services or routes change, only the Services whose EndpointSlices (or their pods) changed otherwise.",
		}),
	}
	for _, c := range []prometheus.Collector{m.nacks, m.responses, m.refused, m.connected, m.builds, m.translatedServices} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// shortType is a type URL's message name, a short label value.
func shortType(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}
