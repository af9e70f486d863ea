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

package main

import (
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The local cluster starts this binary with the arguments of its Deployment; an argument the
// launcher does not know would crash-loop cert-manager there, so read them from the manifest.
func TestAcceptsTheLocalClusterDeploymentArgs(t *testing.T) {
	manifest, err := os.ReadFile("../../config/cert-manager/controller.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- (--[a-z0-9-]+(?:=\S*)?)\s*$`).FindAllStringSubmatch(string(manifest), -1) {
		args = append(args, m[1])
	}
	if len(args) < 3 {
		t.Fatalf("found only %q as arguments in controller.yaml", args)
	}
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(%q): %v", args, err)
	}
	if !o.leaderElect || o.leaderElectionNamespace != "kube-system" || !enabled(o.healthzAddress) {
		t.Errorf("the Deployment's controller must elect its leader in kube-system (knit's operator reads that Lease) "+
			"and serve /livez for its probe; got %+v", o)
	}
}

// test/testenv starts the binary like this for the integration suite.
func TestAcceptsTheTestbedArgs(t *testing.T) {
	args := strings.Fields("--kubeconfig /tmp/kc --leader-elect=false --cluster-resource-namespace kube-system --controllers * --metrics-listen-address 0 --v 2")
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.leaderElect || o.kubeconfig != "/tmp/kc" || o.controllers != "*" || enabled(o.metricsAddress) {
		t.Errorf("parsed %+v", o)
	}
}

func TestRefusesUnknownFlagsAndArguments(t *testing.T) {
	for _, args := range [][]string{{"--max-concurrent-challenges=60"}, {"--v=2", "extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
