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
	"testing"

	meshv1 "github.com/knit-mesh/knit/api/v1alpha1"
)

func TestStrictMutualTLSIsInEffect(t *testing.T) {
	spec := &meshv1.MeshSpec{MTLS: meshv1.MTLSSpec{Mode: meshv1.MTLSStrict}}
	if fields := notYetImplemented(spec); len(fields) != 0 {
		t.Fatalf("mtls.mode STRICT is reported as not yet implemented: %q", fields)
	}
}
