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

// Package buildinfo is the release a binary was built as. The release build sets it with
// -ldflags "-X github.com/knit-mesh/knit/internal/buildinfo.Version=v0.2.0": knit-proxy and
// knit-controlplane carry the mesh release (hack/images.sh builds one of each per release in
// internal/versions), the operator (cmd/manager) its own release, the CSV version of its OLM
// bundle (KNIT_VERSION; hack/catalog.sh builds one per release in the catalog).
package buildinfo

// Version is the release of this binary; "dev" in a build without -ldflags.
var Version = "dev"
