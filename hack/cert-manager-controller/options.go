package main

// Flags, defaults and the controller list of upstream cmd/controller/app/options (v1.21) and
// internal/apis/config/controller/v1alpha1/defaults.go, restated here because that defaults
// package imports the Venafi controllers (and through them github.com/Venafi/vcert/v5, which this
// build cannot fetch). Keep the values in step with those two files when CERT_MANAGER_VERSION
// moves.
//
// Differences from upstream, all deliberate:
//   - no Venafi controllers (certificaterequests-issuer-venafi,
//     certificatesigningrequests-issuer-venafi); naming one in --controllers is an error.
//   - no --config (see start.go).
//   - --metrics-listen-address=0 and --internal-healthz-listen-address=0 switch those servers
//     off (upstream always listens), so that several test controllers can share a host; the
//     healthz flags are not hidden.
//   - the healthz server is off by default (upstream: 0.0.0.0:9403). It only serves the
//     Deployment's liveness probe; out of cluster it would bind every interface and make two
//     controllers on one host (parallel test packages) collide on the port. The metrics default
//     stays upstream's 0.0.0.0:9402: pass --metrics-listen-address=0 (or a 127.0.0.1 address).

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	cliflag "k8s.io/component-base/cli/flag"
	logsapi "k8s.io/component-base/logs/api/v1"

	config "github.com/cert-manager/cert-manager/internal/apis/config/controller"
	sharedvalidation "github.com/cert-manager/cert-manager/internal/apis/config/shared/validation"
	"github.com/cert-manager/cert-manager/internal/controller/feature"
	cm "github.com/cert-manager/cert-manager/pkg/apis/certmanager"
	challengescontroller "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	orderscontroller "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	shimgatewaycontroller "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/gateways"
	shimingresscontroller "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	shimlistenersetcontroller "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/listenerset"
	cracmecontroller "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	crapprovercontroller "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crcacontroller "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsignedcontroller "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	crvaultcontroller "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/vault"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	certificatesmetricscontroller "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	csracmecontroller "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/acme"
	csrcacontroller "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/ca"
	csrselfsignedcontroller "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/selfsigned"
	csrvaultcontroller "github.com/cert-manager/cert-manager/pkg/controller/certificatesigningrequests/vault"
	clusterissuerscontroller "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	issuerscontroller "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// Issuer implementations register themselves with pkg/issuer (as in upstream start.go).
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
)

// venafiControllers are upstream controller names this build does not contain.
var venafiControllers = []string{
	"certificaterequests-issuer-venafi",
	"certificatesigningrequests-issuer-venafi",
}

var (
	// AllControllers is upstream's list minus the two Venafi controllers.
	AllControllers = []string{
		issuerscontroller.ControllerName,
		clusterissuerscontroller.ControllerName,
		certificatesmetricscontroller.ControllerName,
		shimingresscontroller.ControllerName,
		shimgatewaycontroller.ControllerName,
		orderscontroller.ControllerName,
		challengescontroller.ControllerName,
		cracmecontroller.CRControllerName,
		crapprovercontroller.ControllerName,
		crcacontroller.CRControllerName,
		crselfsignedcontroller.CRControllerName,
		crvaultcontroller.CRControllerName,
		// certificate controllers
		trigger.ControllerName,
		issuing.ControllerName,
		keymanager.ControllerName,
		requestmanager.ControllerName,
		readiness.ControllerName,
		revisionmanager.ControllerName,
		// experimental CSR controllers
		csracmecontroller.CSRControllerName,
		csrcacontroller.CSRControllerName,
		csrselfsignedcontroller.CSRControllerName,
		csrvaultcontroller.CSRControllerName,
	}

	// DefaultEnabledControllers is what '*' means (upstream's list minus Venafi).
	DefaultEnabledControllers = []string{
		issuerscontroller.ControllerName,
		clusterissuerscontroller.ControllerName,
		certificatesmetricscontroller.ControllerName,
		shimingresscontroller.ControllerName,
		orderscontroller.ControllerName,
		challengescontroller.ControllerName,
		cracmecontroller.CRControllerName,
		crapprovercontroller.ControllerName,
		crcacontroller.CRControllerName,
		crselfsignedcontroller.CRControllerName,
		crvaultcontroller.CRControllerName,
		// certificate controllers
		trigger.ControllerName,
		issuing.ControllerName,
		keymanager.ControllerName,
		requestmanager.ControllerName,
		readiness.ControllerName,
		revisionmanager.ControllerName,
	}

	ExperimentalCertificateSigningRequestControllers = []string{
		csracmecontroller.CSRControllerName,
		csrcacontroller.CSRControllerName,
		csrselfsignedcontroller.CSRControllerName,
		csrvaultcontroller.CSRControllerName,
	}

	ClusterScopedControllers = []string{
		clusterissuerscontroller.ControllerName,
		csracmecontroller.CSRControllerName,
		csrcacontroller.CSRControllerName,
		csrselfsignedcontroller.CSRControllerName,
		csrvaultcontroller.CSRControllerName,
	}
)

// NewControllerConfiguration returns the configuration with upstream's defaults (the values of
// internal/apis/config/controller/v1alpha1/defaults.go and
// internal/apis/config/shared/v1alpha1/defaults.go after conversion to the internal type).
func NewControllerConfiguration() *config.ControllerConfiguration {
	c := &config.ControllerConfiguration{
		APIServerHost:            "",
		KubeConfig:               "",
		KubernetesAPIQPS:         20,
		KubernetesAPIBurst:       50,
		Namespace:                "",
		ClusterResourceNamespace: "kube-system",
		Controllers:              []string{"*"},

		IssuerAmbientCredentials:        false,
		ClusterIssuerAmbientCredentials: true,
		EnableCertificateOwnerRef:       false,
		EnableGatewayAPI:                false,
		EnableGatewayAPIListenerSet:     false,
		CopiedAnnotationPrefixes: []string{
			"*",
			"-kubectl.kubernetes.io/",
			"-fluxcd.io/",
			"-argocd.argoproj.io/",
		},
		NumberOfConcurrentWorkers: 5,
		MaxConcurrentChallenges:   60,
		MetricsListenAddress:      "0.0.0.0:9402",
		HealthzListenAddress:      "0", // upstream: "0.0.0.0:9403"; see the note at the top
		EnablePprof:               false,
		PprofAddress:              "localhost:6060",

		IngressShimConfig: config.IngressShimConfig{
			DefaultIssuerName:                 "",
			DefaultIssuerKind:                 "Issuer",
			DefaultIssuerGroup:                cm.GroupName,
			DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
			ExtraCertificateAnnotations:       []string{},
		},
		ACMEHTTP01Config: config.ACMEHTTP01Config{
			SolverImage:                 fmt.Sprintf("quay.io/jetstack/cert-manager-acmesolver:%s", util.AppVersion),
			SolverResourceRequestCPU:    "10m",
			SolverResourceRequestMemory: "64Mi",
			SolverResourceLimitsCPU:     "100m",
			SolverResourceLimitsMemory:  "64Mi",
			SolverRunAsNonRoot:          true,
			SolverRuntimeClassName:      "",
			SolverNameservers:           []string{},
		},
		ACMEDNS01Config: config.ACMEDNS01Config{
			RecursiveNameservers:     []string{},
			RecursiveNameserversOnly: false,
			CheckRetryPeriod:         10 * time.Second,
		},
		PEMSizeLimitsConfig: config.PEMSizeLimitsConfig{
			MaxCertificateSize: 36500,
			MaxPrivateKeySize:  13000,
			MaxChainLength:     95000,
			MaxBundleSize:      330000,
		},
		CertificateRequestMinimumBackoffDuration: 1 * time.Hour,
		CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
	}
	c.LeaderElectionConfig.Enabled = true
	c.LeaderElectionConfig.Namespace = "kube-system"
	c.LeaderElectionConfig.LeaseDuration = 60 * time.Second
	c.LeaderElectionConfig.RenewDeadline = 40 * time.Second
	c.LeaderElectionConfig.RetryPeriod = 15 * time.Second
	c.LeaderElectionConfig.HealthzTimeout = 20 * time.Second
	c.MetricsTLSConfig.Dynamic.LeafDuration = 7 * 24 * time.Hour
	c.GatewayAPIConfig.Enabled = c.EnableGatewayAPI
	c.GatewayAPIConfig.EnableListenerSet = c.EnableGatewayAPIListenerSet
	logsapi.SetRecommendedLoggingConfiguration(&c.Logging)
	return c
}

// AddConfigFlags mirrors upstream's options.AddConfigFlags, with upstream's flag names.
func AddConfigFlags(fs *pflag.FlagSet, c *config.ControllerConfiguration) {
	fs.StringVar(&c.APIServerHost, "master", c.APIServerHost, ""+
		"Optional apiserver host address to connect to. If not specified, autoconfiguration "+
		"will be attempted.")
	fs.StringVar(&c.KubeConfig, "kubeconfig", c.KubeConfig, ""+
		"Paths to a kubeconfig. Only required if out-of-cluster.")
	fs.Float32Var(&c.KubernetesAPIQPS, "kube-api-qps", c.KubernetesAPIQPS, "indicates the maximum queries-per-second requests to the Kubernetes apiserver")
	fs.IntVar(&c.KubernetesAPIBurst, "kube-api-burst", c.KubernetesAPIBurst, "the maximum burst queries-per-second of requests sent to the Kubernetes apiserver")
	fs.StringVar(&c.ClusterResourceNamespace, "cluster-resource-namespace", c.ClusterResourceNamespace, ""+
		"Namespace to store resources owned by cluster scoped resources such as ClusterIssuer in. "+
		"This must be specified if ClusterIssuers are enabled.")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, ""+
		"If set, this limits the scope of cert-manager to a single namespace and ClusterIssuers are disabled. "+
		"If not specified, all namespaces will be watched")
	fs.BoolVar(&c.LeaderElectionConfig.Enabled, "leader-elect", c.LeaderElectionConfig.Enabled, ""+
		"If true, cert-manager will perform leader election between instances to ensure no more "+
		"than one instance of cert-manager operates at a time")
	fs.StringVar(&c.LeaderElectionConfig.Namespace, "leader-election-namespace", c.LeaderElectionConfig.Namespace, ""+
		"Namespace used to perform leader election. Only used if leader election is enabled")
	fs.DurationVar(&c.LeaderElectionConfig.LeaseDuration, "leader-election-lease-duration", c.LeaderElectionConfig.LeaseDuration, ""+
		"The duration that non-leader candidates will wait after observing a leadership "+
		"renewal until attempting to acquire leadership of a led but unrenewed leader "+
		"slot. This is effectively the maximum duration that a leader can be stopped "+
		"before it is replaced by another candidate. This is only applicable if leader "+
		"election is enabled.")
	fs.DurationVar(&c.LeaderElectionConfig.RenewDeadline, "leader-election-renew-deadline", c.LeaderElectionConfig.RenewDeadline, ""+
		"The interval between attempts by the acting master to renew a leadership slot "+
		"before it stops leading. This must be less than or equal to the lease duration. "+
		"This is only applicable if leader election is enabled.")
	fs.DurationVar(&c.LeaderElectionConfig.RetryPeriod, "leader-election-retry-period", c.LeaderElectionConfig.RetryPeriod, ""+
		"The duration the clients should wait between attempting acquisition and renewal "+
		"of a leadership. This is only applicable if leader election is enabled.")

	fs.StringSliceVar(&c.Controllers, "controllers", c.Controllers, fmt.Sprintf(""+
		"A list of controllers to enable. '--controllers=*' enables all "+
		"on-by-default controllers, '--controllers=foo' enables just the controller "+
		"named 'foo', '--controllers=*,-foo' disables the controller named "+
		"'foo'.\nAll controllers: %s\n(Venafi controllers are not built into this binary.)",
		strings.Join(AllControllers, ", ")))

	fs.StringVar(&c.ACMEHTTP01Config.SolverImage, "acme-http01-solver-image", c.ACMEHTTP01Config.SolverImage, ""+
		"The docker image to use to solve ACME HTTP01 challenges. You most likely will not "+
		"need to change this parameter unless you are testing a new feature or developing cert-manager.")
	fs.StringVar(&c.ACMEHTTP01Config.SolverResourceRequestCPU, "acme-http01-solver-resource-request-cpu", c.ACMEHTTP01Config.SolverResourceRequestCPU, ""+
		"Defines the resource request CPU size when spawning new ACME HTTP01 challenge solver pods.")
	fs.StringVar(&c.ACMEHTTP01Config.SolverResourceRequestMemory, "acme-http01-solver-resource-request-memory", c.ACMEHTTP01Config.SolverResourceRequestMemory, ""+
		"Defines the resource request Memory size when spawning new ACME HTTP01 challenge solver pods.")
	fs.StringVar(&c.ACMEHTTP01Config.SolverResourceLimitsCPU, "acme-http01-solver-resource-limits-cpu", c.ACMEHTTP01Config.SolverResourceLimitsCPU, ""+
		"Defines the resource limits CPU size when spawning new ACME HTTP01 challenge solver pods.")
	fs.StringVar(&c.ACMEHTTP01Config.SolverResourceLimitsMemory, "acme-http01-solver-resource-limits-memory", c.ACMEHTTP01Config.SolverResourceLimitsMemory, ""+
		"Defines the resource limits Memory size when spawning new ACME HTTP01 challenge solver pods.")
	fs.BoolVar(&c.ACMEHTTP01Config.SolverRunAsNonRoot, "acme-http01-solver-run-as-non-root", c.ACMEHTTP01Config.SolverRunAsNonRoot, ""+
		"Defines the ability to run the http01 solver as root for troubleshooting issues")
	fs.StringSliceVar(&c.ACMEHTTP01Config.SolverNameservers, "acme-http01-solver-nameservers",
		c.ACMEHTTP01Config.SolverNameservers, "A list of comma separated dns server endpoints used for "+
			"ACME HTTP01 check requests. This should be a list containing host and "+
			"port, for example 8.8.8.8:53,8.8.4.4:53")

	fs.BoolVar(&c.ClusterIssuerAmbientCredentials, "cluster-issuer-ambient-credentials", c.ClusterIssuerAmbientCredentials, ""+
		"Whether a cluster-issuer may make use of ambient credentials for issuers. 'Ambient Credentials' are credentials drawn from the environment, metadata services, or local files which are not explicitly configured in the ClusterIssuer API object. "+
		"When this flag is enabled, the following sources for credentials are also used: "+
		"AWS - All sources the Go SDK defaults to, notably including any EC2 IAM roles available via instance metadata.")
	fs.BoolVar(&c.IssuerAmbientCredentials, "issuer-ambient-credentials", c.IssuerAmbientCredentials, ""+
		"Whether an issuer may make use of ambient credentials. 'Ambient Credentials' are credentials drawn from the environment, metadata services, or local files which are not explicitly configured in the Issuer API object. "+
		"When this flag is enabled, the following sources for credentials are also used: "+
		"AWS - All sources the Go SDK defaults to, notably including any EC2 IAM roles available via instance metadata.")

	fs.StringSliceVar(&c.IngressShimConfig.DefaultAutoCertificateAnnotations, "auto-certificate-annotations", c.IngressShimConfig.DefaultAutoCertificateAnnotations, ""+
		"The annotation consumed by the ingress-shim controller to indicate an ingress is requesting a certificate")
	fs.StringSliceVar(&c.IngressShimConfig.ExtraCertificateAnnotations, "extra-certificate-annotations", []string{}, ""+
		"Extra annotation to be added by the ingress-shim controller to certificate object")
	fs.StringVar(&c.IngressShimConfig.DefaultIssuerName, "default-issuer-name", c.IngressShimConfig.DefaultIssuerName, ""+
		"Name of the Issuer to use when the tls is requested but issuer name is not specified on the ingress resource.")
	fs.StringVar(&c.IngressShimConfig.DefaultIssuerKind, "default-issuer-kind", c.IngressShimConfig.DefaultIssuerKind, ""+
		"Kind of the Issuer to use when the tls is requested but issuer kind is not specified on the ingress resource.")
	fs.StringVar(&c.IngressShimConfig.DefaultIssuerGroup, "default-issuer-group", c.IngressShimConfig.DefaultIssuerGroup, ""+
		"Group of the Issuer to use when the tls is requested but issuer group is not specified on the ingress resource.")

	fs.StringSliceVar(&c.ACMEDNS01Config.RecursiveNameservers, "dns01-recursive-nameservers",
		c.ACMEDNS01Config.RecursiveNameservers, "A list of comma separated dns server endpoints used for DNS01 and DNS-over-HTTPS (DoH) check requests. "+
			"This should be a list containing entries of the following formats: `<ip address>:<port>` or `https://<DoH RFC 8484 server address>`. "+
			"For example: `8.8.8.8:53,8.8.4.4:53,[2001:4860:4860::8888]:53` or `https://1.1.1.1/dns-query,https://8.8.8.8/dns-query`. "+
			"To make sure ALL DNS requests happen through DoH, `dns01-recursive-nameservers-only` should also be set to true.")
	fs.BoolVar(&c.ACMEDNS01Config.RecursiveNameserversOnly, "dns01-recursive-nameservers-only",
		c.ACMEDNS01Config.RecursiveNameserversOnly,
		"When true, cert-manager will only ever query the configured DNS resolvers "+
			"to perform the ACME DNS01 self check. This is useful in DNS constrained "+
			"environments, where access to authoritative nameservers is restricted. "+
			"Enabling this option could cause the DNS01 self check to take longer "+
			"due to caching performed by the recursive nameservers.")
	fs.DurationVar(&c.ACMEDNS01Config.CheckRetryPeriod, "dns01-check-retry-period", c.ACMEDNS01Config.CheckRetryPeriod, ""+
		"The duration the controller should wait between a propagation check. Despite the name, this flag is used to configure the wait period for both DNS01 and HTTP01 challenge propagation checks. "+
		"This should be a valid duration string, for example 180s or 1h")

	fs.BoolVar(&c.EnableCertificateOwnerRef, "enable-certificate-owner-ref", c.EnableCertificateOwnerRef, ""+
		"Whether to set the certificate resource as an owner of secret where the tls certificate is stored. "+
		"When this flag is enabled, the secret will be automatically removed when the certificate resource is deleted.")
	fs.BoolVar(&c.GatewayAPIConfig.Enabled, "enable-gateway-api", c.GatewayAPIConfig.Enabled, ""+
		"Whether gateway API integration is enabled within cert-manager. The ExperimentalGatewayAPISupport "+
		"feature gate must also be enabled (default as of 1.15).")
	fs.BoolVar(&c.GatewayAPIConfig.EnableListenerSet, "enable-gateway-api-listenerset", c.GatewayAPIConfig.EnableListenerSet, ""+
		"Whether the ListenerSet certificate-shim controller is enabled. Requires --enable-gateway-api "+
		"and the ListenerSets feature gate.")
	fs.StringSliceVar(&c.CopiedAnnotationPrefixes, "copied-annotation-prefixes", c.CopiedAnnotationPrefixes, "Specify which annotations should/shouldn't be copied "+
		"from Certificate to CertificateRequest and Order, as well as from CertificateSigningRequest to Order, by passing a list of annotation key prefixes. "+
		"A prefix starting with a dash(-) specifies an annotation that shouldn't be copied. Example: '*,-kubectl.kubernetes.io/'- all annotations "+
		"will be copied apart from the ones where the key is prefixed with 'kubectl.kubernetes.io/'.")
	fs.Var(cliflag.NewMapStringBool(&c.FeatureGates), "feature-gates", "A set of key=value pairs that describe feature gates for alpha/experimental features. "+
		"Options are:\n"+strings.Join(utilfeature.DefaultFeatureGate.KnownFeatures(), "\n"))

	fs.IntVar(&c.NumberOfConcurrentWorkers, "concurrent-workers", c.NumberOfConcurrentWorkers, ""+
		"The number of concurrent workers for each controller.")
	fs.IntVar(&c.MaxConcurrentChallenges, "max-concurrent-challenges", c.MaxConcurrentChallenges, ""+
		"The maximum number of challenges that can be scheduled as 'processing' at once.")
	fs.DurationVar(&c.CertificateRequestMinimumBackoffDuration, "certificate-request-minimum-backoff-duration", c.CertificateRequestMinimumBackoffDuration, ""+
		"The minimum backoff duration when a certificate request fails. The delay starts at this value "+
		"and is exponentially increased with each consecutive failure, up to the maximum backoff duration.")
	fs.DurationVar(&c.CertificateRequestMaximumBackoffDuration, "certificate-request-maximum-backoff-duration", c.CertificateRequestMaximumBackoffDuration, ""+
		"The maximum backoff duration when a certificate request fails.")

	fs.StringVar(&c.MetricsListenAddress, "metrics-listen-address", c.MetricsListenAddress, ""+
		"The host and port that the metrics endpoint should listen on. '0' disables the metrics server (knit launcher only).")
	fs.BoolVar(&c.EnablePprof, "enable-profiling", c.EnablePprof, ""+
		"Enable profiling for controller.")
	fs.StringVar(&c.PprofAddress, "profiler-address", c.PprofAddress,
		"The host and port that Go profiler should listen on, i.e localhost:6060. Ensure that profiler is not exposed on a public address. Profiler will be served at /debug/pprof.")

	fs.StringVar(&c.MetricsTLSConfig.Filesystem.CertFile, "metrics-tls-cert-file", c.MetricsTLSConfig.Filesystem.CertFile, "path to the file containing the TLS certificate to serve with")
	fs.StringVar(&c.MetricsTLSConfig.Filesystem.KeyFile, "metrics-tls-private-key-file", c.MetricsTLSConfig.Filesystem.KeyFile, "path to the file containing the TLS private key to serve with")
	fs.DurationVar(&c.MetricsTLSConfig.Dynamic.LeafDuration, "metrics-dynamic-serving-leaf-duration", c.MetricsTLSConfig.Dynamic.LeafDuration, "leaf duration of serving certificates")
	fs.StringVar(&c.MetricsTLSConfig.Dynamic.SecretNamespace, "metrics-dynamic-serving-ca-secret-namespace", c.MetricsTLSConfig.Dynamic.SecretNamespace, "namespace of the secret used to store the CA that signs serving certificates")
	fs.StringVar(&c.MetricsTLSConfig.Dynamic.SecretName, "metrics-dynamic-serving-ca-secret-name", c.MetricsTLSConfig.Dynamic.SecretName, "name of the secret used to store the CA that signs serving certificates")
	fs.StringSliceVar(&c.MetricsTLSConfig.Dynamic.DNSNames, "metrics-dynamic-serving-dns-names", c.MetricsTLSConfig.Dynamic.DNSNames, "DNS names that should be present on certificates generated by the dynamic serving CA")
	fs.StringSliceVar(&c.MetricsTLSConfig.CipherSuites, "metrics-tls-cipher-suites", c.MetricsTLSConfig.CipherSuites,
		"Comma-separated list of cipher suites for the server. "+
			"If omitted, the default Go cipher suites will be used.  "+
			"Possible values: "+strings.Join(cliflag.TLSCipherPossibleValues(), ","))
	fs.StringVar(&c.MetricsTLSConfig.MinTLSVersion, "metrics-tls-min-version", c.MetricsTLSConfig.MinTLSVersion,
		"Minimum TLS version supported. If omitted, the default Go minimum version will be used. "+
			"Possible values: "+strings.Join(cliflag.TLSPossibleVersions(), ", "))

	// Upstream hides these two ("internal-" prefix); they are visible here because tests that run
	// several controllers on one host need to move or disable the healthz server.
	fs.StringVar(&c.HealthzListenAddress, "internal-healthz-listen-address", c.HealthzListenAddress, ""+
		"The host and port that the healthz server should listen on. "+
		"The healthz server serves the /livez endpoint, which is called by the LivenessProbe. '0' disables it "+
		"(knit launcher: the default; upstream's is 0.0.0.0:9403).")
	fs.DurationVar(&c.LeaderElectionConfig.HealthzTimeout, "internal-healthz-leader-election-timeout", c.LeaderElectionConfig.HealthzTimeout, ""+
		"Leader election healthz checks within this timeout period after the lease expires will still return healthy")

	logf.AddFlags(&c.Logging, fs)
}

// EnabledControllers mirrors upstream's options.EnabledControllers.
func EnabledControllers(o *config.ControllerConfiguration) sets.Set[string] {
	var disabled []string
	enabled := sets.New[string]()

	for _, controller := range o.Controllers {
		switch {
		case controller == "*":
			enabled = enabled.Insert(DefaultEnabledControllers...)
		case strings.HasPrefix(controller, "-"):
			disabled = append(disabled, strings.TrimPrefix(controller, "-"))
		default:
			enabled = enabled.Insert(controller)
		}
	}

	// Detect if "*" was implied (in case only disabled controllers were specified)
	if len(disabled) > 0 && len(enabled) == 0 {
		enabled = enabled.Insert(DefaultEnabledControllers...)
	}

	if utilfeature.DefaultFeatureGate.Enabled(feature.ExperimentalCertificateSigningRequestControllers) {
		logf.Log.Info("enabling all experimental certificatesigningrequest controllers")
		enabled = enabled.Insert(ExperimentalCertificateSigningRequestControllers...)
	}

	if utilfeature.DefaultFeatureGate.Enabled(feature.ExperimentalGatewayAPISupport) && o.GatewayAPIConfig.Enabled {
		logf.Log.Info("enabling the sig-network Gateway API certificate-shim and HTTP-01 solver")
		enabled = enabled.Insert(shimgatewaycontroller.ControllerName)

		if utilfeature.DefaultFeatureGate.Enabled(feature.ListenerSets) && o.GatewayAPIConfig.EnableListenerSet {
			logf.Log.Info("enabling the Gateway API ListenerSet certificate-shim")
			enabled = enabled.Insert(shimlistenersetcontroller.ControllerName)
		}
	}

	if utilfeature.DefaultFeatureGate.Enabled(feature.ValidateCAA) {
		logf.Log.Info("the ValidateCAA feature flag has been removed and is now a no-op")
	}

	// If running namespaced, remove all cluster-scoped controllers.
	if o.Namespace != "" {
		logf.Log.Info("disabling all cluster-scoped controllers as cert-manager is scoped to a single namespace",
			"controllers", strings.Join(ClusterScopedControllers, ", "))
		enabled = enabled.Delete(ClusterScopedControllers...)
	}

	// Only after all controllers have been added, remove the disabled ones.
	enabled = enabled.Delete(disabled...)

	return enabled
}

// ValidateControllerConfiguration restates upstream's
// internal/apis/config/controller/validation.ValidateControllerConfiguration (which cannot be
// imported: it reads the controller list from the Venafi-importing defaults package).
func ValidateControllerConfiguration(cfg *config.ControllerConfiguration) field.ErrorList {
	var allErrors field.ErrorList
	var fldPath *field.Path

	// Keep the deprecated top-level fields in step with GatewayAPIConfig, as upstream's defaulting does.
	cfg.EnableGatewayAPI = cfg.GatewayAPIConfig.Enabled
	cfg.EnableGatewayAPIListenerSet = cfg.GatewayAPIConfig.EnableListenerSet

	allErrors = append(allErrors, logsapi.Validate(&cfg.Logging, nil, fldPath.Child("logging"))...)
	allErrors = append(allErrors, sharedvalidation.ValidateTLSConfig(&cfg.MetricsTLSConfig, fldPath.Child("metricsTLSConfig"))...)

	if cfg.LeaderElectionConfig.Enabled && cfg.LeaderElectionConfig.HealthzTimeout <= 0 {
		allErrors = append(allErrors, field.Invalid(fldPath.Child("leaderElectionConfig").Child("healthzTimeout"), cfg.LeaderElectionConfig.HealthzTimeout, "must be greater than 0"))
	}
	allErrors = append(allErrors, sharedvalidation.ValidateLeaderElectionConfig(&cfg.LeaderElectionConfig.LeaderElectionConfig, fldPath.Child("leaderElectionConfig"))...)

	if len(cfg.IngressShimConfig.DefaultIssuerKind) == 0 {
		allErrors = append(allErrors, field.Required(fldPath.Child("ingressShimConfig").Child("defaultIssuerKind"), "must not be empty"))
	}
	if cfg.KubernetesAPIBurst < -1 {
		allErrors = append(allErrors, field.Invalid(fldPath.Child("kubernetesAPIBurst"), cfg.KubernetesAPIBurst, "must be greater than or equal to -1"))
	}
	if cfg.KubernetesAPIQPS < -1 {
		allErrors = append(allErrors, field.Invalid(fldPath.Child("kubernetesAPIQPS"), cfg.KubernetesAPIQPS, "must be greater than or equal to -1"))
	}
	if float32(cfg.KubernetesAPIBurst) < cfg.KubernetesAPIQPS {
		allErrors = append(allErrors, field.Invalid(fldPath.Child("kubernetesAPIBurst"), cfg.KubernetesAPIBurst, "must be higher or equal to kubernetesAPIQPS"))
	}

	for i, server := range cfg.ACMEHTTP01Config.SolverNameservers {
		if _, _, err := net.SplitHostPort(server); err != nil {
			allErrors = append(allErrors, field.Invalid(fldPath.Child("acmeHTTP01Config").Child("solverNameservers").Index(i), server, "must be in the format <ip address>:<port>"))
		}
	}
	for i, server := range cfg.ACMEDNS01Config.RecursiveNameservers {
		if strings.HasPrefix(server, "https://") {
			if u, err := url.ParseRequestURI(server); err != nil || u.Scheme != "https" || u.Host == "" {
				allErrors = append(allErrors, field.Invalid(fldPath.Child("acmeDNS01Config").Child("recursiveNameservers").Index(i), server, "must be in the format https://<DoH RFC 8484 server address>"))
			}
		} else if _, _, err := net.SplitHostPort(server); err != nil {
			allErrors = append(allErrors, field.Invalid(fldPath.Child("acmeDNS01Config").Child("recursiveNameservers").Index(i), server, "must be in the format <ip address>:<port>"))
		}
	}

	known := sets.New(AllControllers...)
	venafi := sets.New(venafiControllers...)
	for i, controller := range cfg.Controllers {
		if controller == "*" {
			continue
		}
		controller = strings.TrimPrefix(controller, "-")
		switch {
		case venafi.Has(controller):
			// Disabling a controller that is not there anyway is harmless; enabling it is not.
			if !strings.HasPrefix(cfg.Controllers[i], "-") {
				allErrors = append(allErrors, field.Invalid(fldPath.Child("controllers").Index(i), controller, "the Venafi issuer is not built into this binary"))
			}
		case !known.Has(controller):
			allErrors = append(allErrors, field.Invalid(fldPath.Child("controllers").Index(i), controller, "is not in the list of known controllers"))
		}
	}

	p := cfg.PEMSizeLimitsConfig
	pp := fldPath.Child("pemSizeLimitsConfig")
	for name, v := range map[string]int{"maxCertificateSize": p.MaxCertificateSize, "maxPrivateKeySize": p.MaxPrivateKeySize, "maxChainLength": p.MaxChainLength, "maxBundleSize": p.MaxBundleSize} {
		if v <= 0 {
			allErrors = append(allErrors, field.Invalid(pp.Child(name), v, "must be greater than 0"))
		}
	}
	if p.MaxCertificateSize > p.MaxBundleSize {
		allErrors = append(allErrors, field.Invalid(pp.Child("maxCertificateSize"), p.MaxCertificateSize, "must not be larger than maxBundleSize"))
	}
	if p.MaxChainLength > p.MaxBundleSize {
		allErrors = append(allErrors, field.Invalid(pp.Child("maxChainLength"), p.MaxChainLength, "must not exceed maxBundleSize"))
	}

	minB, maxB := cfg.CertificateRequestMinimumBackoffDuration, cfg.CertificateRequestMaximumBackoffDuration
	if minB < 0 {
		allErrors = append(allErrors, field.Invalid(fldPath.Child("certificateRequestMinimumBackoffDuration"), minB.String(), "must not be negative"))
	}
	if maxB < 0 {
		allErrors = append(allErrors, field.Invalid(fldPath.Child("certificateRequestMaximumBackoffDuration"), maxB.String(), "must not be negative"))
	}
	if minB > 0 && maxB > 0 && maxB < minB {
		allErrors = append(allErrors, field.Invalid(fldPath.Child("certificateRequestMaximumBackoffDuration"), maxB.String(), "must be greater than or equal to certificateRequestMinimumBackoffDuration"))
	}

	return allErrors
}
