// cert-manager's webhook, built from the github.com/cert-manager/cert-manager module (upstream's
// cmd/webhook is a nested module the Go module proxy does not serve). It runs cert-manager's own
// webhook server (validation, defaulting, conversion, CertificateRequest identity and approval
// checks) with upstream's flags and defaults (pkg/webhook/options); only the config-file loading
// of upstream's command is left out (pass flags). Lives under cert-manager's module path so that
// it may import the module's internal/ packages, as upstream's binary does.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cert-manager/cert-manager/internal/apis/config/webhook/validation"
	cmwebhook "github.com/cert-manager/cert-manager/internal/webhook"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
	"github.com/cert-manager/cert-manager/pkg/webhook/options"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logf.InitLogs()
	defer logf.FlushLogs()
	ctx = logf.NewContext(ctx, logf.Log, "webhook")

	cfg, err := options.NewWebhookConfiguration()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var version bool
	cmd := &cobra.Command{
		Use:           "cert-manager-webhook",
		Short:         fmt.Sprintf("cert-manager webhook (%s)", util.AppVersion),
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if version {
				fmt.Printf("cert-manager-webhook %s\n", util.AppVersion)
				return nil
			}
			if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(cfg.FeatureGates); err != nil {
				return err
			}
			if errs := validation.ValidateWebhookConfiguration(cfg, nil); len(errs) > 0 {
				return fmt.Errorf("error validating flags: %w", errs.ToAggregate())
			}
			if err := logf.ValidateAndApply(&cfg.Logging); err != nil {
				return err
			}
			srv, err := cmwebhook.NewCertManagerWebhookServer(logf.FromContext(ctx, "webhook"), *cfg)
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		},
	}
	cmd.Flags().BoolVar(&version, "version", false, "print the version and exit")
	options.AddConfigFlags(cmd.Flags(), cfg)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
