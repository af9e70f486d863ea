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

// Package buildinfo is the mesh release a binary was built as. The release build sets it with
// -ldflags "-X github.com/knit-mesh/knit/internal/buildinfo.Version=v0.2.0" (hack/images.sh
// builds one knit-proxy and knit-controlplane per release in internal/versions).
package buildinfo

// Version is the mesh release of this binary; "dev" in a build without -ldflags.
var Version = "dev"
