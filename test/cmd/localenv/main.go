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

// Command localenv runs knit against a local API server without a cluster: kube-apiserver +
// etcd + the cert-manager controller (the same testbed as the integration suite) and the knit
// manager binary, until it is signalled. `make run` starts it in the background.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/knit-mesh/knit/test/testenv"
)

func main() {
	state := flag.String("state", ".run", "directory for the kubeconfig, logs and the ready marker")
	manager := flag.String("manager", "bin/manager", "the knit manager binary to run")
	flag.Parse()
	if err := run(*state, *manager); err != nil {
		fmt.Fprintln(os.Stderr, "localenv:", err)
		os.Exit(1)
	}
}

func run(state, managerBin string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logs := filepath.Join(state, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	os.Setenv("KNIT_TEST_LOGS", logs)
	env, err := testenv.Start(testenv.Options{CertManager: true, Out: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "localenv: stopping:", err)
		}
	}()

	kubeconfig, err := env.KubeConfig("admin", "system:masters")
	if err != nil {
		return err
	}
	kcPath, err := filepath.Abs(filepath.Join(state, "kubeconfig"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}

	mgrLog, err := os.Create(filepath.Join(logs, "manager.log"))
	if err != nil {
		return err
	}
	defer mgrLog.Close()
	mgr := exec.Command(managerBin,
		"--metrics-bind-address=0", "--health-probe-bind-address=127.0.0.1:0", "--zap-devel")
	mgr.Env = append(os.Environ(), "KUBECONFIG="+kcPath)
	mgr.Stdout, mgr.Stderr = mgrLog, mgrLog
	if err := mgr.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", managerBin, err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Wait() }()
	fmt.Printf("localenv: knit manager started, pid %d, log %s\n", mgr.Process.Pid, mgrLog.Name())

	if err := os.WriteFile(filepath.Join(state, "ready"), []byte(kcPath+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(state, "ready"))

	select {
	case <-ctx.Done():
		_ = mgr.Process.Signal(syscall.SIGTERM)
		select {
		case <-mgrDone:
		case <-time.After(15 * time.Second):
			_ = mgr.Process.Kill()
		}
		return nil
	case err := <-mgrDone:
		return fmt.Errorf("the manager exited (%v); see %s", err, mgrLog.Name())
	}
}
