package main

import (
	"strings"
	"testing"
)

func TestGatewayConfigDrainsAfterADelay(t *testing.T) {
	env := map[string]string{"KNIT_CONTROL_PLANE": "knit-controlplane.knit-system.svc:15010", "KNIT_GATEWAY": "shop/edge"}
	cfg, err := gatewayConfig(sidecarFlags{adminPort: 15020, localAdminPort: 15000}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.ProbeAddress != ":15020" || cfg.Admin.Address != "127.0.0.1:15000" || !cfg.Gateway || len(cfg.Listeners) != 0 {
		t.Fatalf("%+v", cfg)
	}
	// Clients reach a gateway through its Service: it keeps accepting while its endpoint leaves.
	if d := cfg.Drain.Delay.D(); d != gatewayDrainDelay || d <= 0 {
		t.Fatalf("drain delay %s, want %s", d, gatewayDrainDelay)
	}

	for _, tc := range []struct {
		f    sidecarFlags
		env  map[string]string
		want string
	}{
		{sidecarFlags{adminPort: 15000, localAdminPort: 15000}, env, "--admin-port and --local-admin-port must differ"},
		{sidecarFlags{adminPort: 15020, localAdminPort: 15000}, map[string]string{"KNIT_GATEWAY": "shop/edge"}, "KNIT_CONTROL_PLANE is required with --gateway"},
		{sidecarFlags{adminPort: 15020, localAdminPort: 15000}, map[string]string{"KNIT_CONTROL_PLANE": "cp:15010"}, "KNIT_GATEWAY is required with --gateway"},
	} {
		_, err := gatewayConfig(tc.f, func(k string) string { return tc.env[k] })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v %v: want error containing %q, got %v", tc.f, tc.env, tc.want, err)
		}
	}
}
