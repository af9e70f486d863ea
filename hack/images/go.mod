// Builds knit's container images without Docker or a registry; see main.go. A module of its own
// so that go-containerregistry stays out of the project's go.mod.
module github.com/knit-mesh/knit/hack/images

go 1.26.0

require (
	github.com/google/go-containerregistry v0.22.1
	sigs.k8s.io/yaml v1.6.0
)

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
)
