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

package identity

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the identity service.
type Metrics struct {
	issued  prometheus.Counter
	refused *prometheus.CounterVec
	latency prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "knit_identity_certificates_issued_total", Help: "Workload certificates issued.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_identity_requests_refused_total", Help: "Certificate requests refused, by reason.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "knit_identity_issue_duration_seconds", Help: "Time to answer a certificate request that was issued.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 10),
		}),
	}
	for _, c := range []prometheus.Collector{m.issued, m.refused, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("identity metrics: %w", err)
		}
	}
	return m, nil
}
