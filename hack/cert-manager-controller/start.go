package main

// Mirrors upstream cmd/controller/app/start.go (v1.21): the cobra command, feature gates, then
// validation and logging setup before Run. Upstream's --config file loading is left out: it goes
// through internal/apis/config/controller/scheme, whose v1alpha1 defaults import the Venafi
// controllers.

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	config "github.com/cert-manager/cert-manager/internal/apis/config/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"
)

const componentController = "controller"

func newServerCommand(
	setupCtx context.Context,
	run func(context.Context, *config.ControllerConfiguration) error,
	allArgs []string,
) *cobra.Command {
	_ = logf.FromContext(setupCtx, componentController)

	controllerConfig := NewControllerConfiguration()

	cmd := &cobra.Command{
		Use:   "cert-manager-controller",
		Short: fmt.Sprintf("Automated TLS controller for Kubernetes (%s) (%s)", util.AppVersion, util.AppGitCommit),
		Long: `
cert-manager is a Kubernetes addon to automate the management and issuance of
TLS certificates from various issuing sources.

It will ensure certificates are valid and up to date periodically, and attempt
to renew certificates at an appropriate time before expiry.

This build (knit launcher) runs cert-manager's own controllers and issuers, except
the Venafi issuer, which is not built in.`,

		SilenceErrors: true, // We already log errors in main.go
		SilenceUsage:  true, // Don't print usage on every error

		PreRunE: func(cmd *cobra.Command, args []string) error {
			// set feature gates from the flags-based config
			if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(controllerConfig.FeatureGates); err != nil {
				return fmt.Errorf("failed to set feature gates from initial flags-based config: %w", err)
			}

			if errs := ValidateControllerConfiguration(controllerConfig); len(errs) > 0 {
				return fmt.Errorf("error validating flags: %w", errs.ToAggregate())
			}

			if err := logf.ValidateAndApply(&controllerConfig.Logging); err != nil {
				return fmt.Errorf("failed to validate controller logging flags: %w", err)
			}

			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), controllerConfig)
		},
	}

	// Handled in main before the command runs; registered here so that --help lists it.
	cmd.Flags().Bool("version", false, "Print the cert-manager version and exit.")
	AddConfigFlags(cmd.Flags(), controllerConfig)

	// explicitly set provided args in case it does not equal os.Args[:1],
	// eg. when running tests
	cmd.SetArgs(allArgs)

	return cmd
}
