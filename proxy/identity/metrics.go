package identity

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	expiry        prometheus.Gauge
	fetches       *prometheus.CounterVec
	bundleReloads *prometheus.CounterVec
	roots         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "knit_proxy_certificate_expiry_timestamp_seconds", Help: "When the workload certificate in use expires (Unix time).",
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_proxy_certificate_requests_total", Help: "Workload certificate requests to the identity service, by result.",
		}, []string{"result"}),
		bundleReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "knit_proxy_trust_bundle_reloads_total", Help: "Trust bundle file changes loaded or refused.",
		}, []string{"result"}),
		roots: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "knit_proxy_trust_bundle_roots", Help: "Roots in the trust bundle in use.",
		}),
	}
	for _, c := range []prometheus.Collector{m.expiry, m.fetches, m.bundleReloads, m.roots} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("identity metrics: %w", err)
		}
	}
	return m, nil
}
