// Command cert-manager-controller runs the real cert-manager v1.21 controller for knit's tests and
// local clusters. It is a launcher, not a fork: every controller, issuer and informer factory is
// cert-manager's own code, wired the way upstream's cmd/controller (main.go, app/start.go,
// app/controller.go, app/options) wires it.
//
// Why a launcher at all: upstream's cmd/controller is a nested module the Go module proxy does not
// serve, and the Venafi issuer's dependency github.com/Venafi/vcert/v5 cannot be fetched here. This
// module's path sits under github.com/cert-manager/cert-manager/ (as upstream's
// github.com/cert-manager/cert-manager/controller-binary does) so Go lets it import cert-manager's
// internal/ packages. Venafi's packages, and cert-manager's internal/apis/config/controller/v1alpha1
// (whose defaults import them), are kept out of the import graph; their defaults and flag wiring are
// restated in options.go.
//
// Build it with hack/build-cert-manager.sh (sets the version via -ldflags -X).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"

	cmdutil "github.com/cert-manager/cert-manager/internal/cmd/util"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

func main() {
	// --version is handled before anything else so that build scripts can probe the binary
	// without it touching the network or parsing the rest of the flags.
	for _, a := range os.Args[1:] {
		if a == "--version" || a == "-version" {
			printVersion()
			return
		}
	}

	ctx, exit := cmdutil.SetupExitHandler(context.Background(), cmdutil.GracefulShutdown)
	defer exit() // This function might call os.Exit, so defer last

	logf.InitLogs()
	defer logf.FlushLogs()
	ctx = logf.NewContext(ctx, logf.Log, componentController)

	cmd := newServerCommand(ctx, Run, os.Args[1:])
	cmd.Flags().AddGoFlagSet(flag.CommandLine)

	if err := cmd.ExecuteContext(ctx); err != nil {
		logf.Log.Error(err, "error executing command")
		cmdutil.SetExitCode(err)
	}
}

// printVersion prints cert-manager's version variables (pkg/util.AppVersion & co, set at link
// time). The first line's last word is the version, which hack/build-cert-manager.sh checks.
func printVersion() {
	v := util.VersionInfo()
	fmt.Printf("cert-manager-controller %s\n", v.GitVersion)
	if v.GitCommit != "" {
		fmt.Printf("git commit: %s\n", v.GitCommit)
	}
	fmt.Printf("launcher: knit (%s, %s %s/%s; Venafi issuer not built in)\n",
		"github.com/cert-manager/cert-manager/knit-launcher", runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
