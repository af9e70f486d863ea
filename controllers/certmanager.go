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
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// certManagerCRDs are the cert-manager kinds knit uses.
var certManagerCRDs = []string{
	"certificates.cert-manager.io",
	"certificaterequests.cert-manager.io",
	"issuers.cert-manager.io",
	"clusterissuers.cert-manager.io",
}

// CertManagerInstallHint tells a person how to fix a missing cert-manager.
const CertManagerInstallHint = "install cert-manager v1.21 or later (https://cert-manager.io/docs/installation/); knit resumes by itself once its CRDs exist"

// certManagerDetector tells whether cert-manager's CRDs are installed, and starts the watches on
// cert-manager kinds once they are: a watch on a kind the API server does not serve would stop
// the manager, and the operator must keep running (and report why) without cert-manager.
type certManagerDetector struct {
	reader client.Reader // uncached: the answer must be current

	mu      sync.Mutex
	onReady []func() error
	started bool
}

// missing returns the cert-manager CRDs that are not installed.
func (d *certManagerDetector) missing(ctx context.Context) ([]string, error) {
	var absent []string
	for _, name := range certManagerCRDs {
		var crd apiextensionsv1.CustomResourceDefinition
		err := d.reader.Get(ctx, client.ObjectKey{Name: name}, &crd)
		switch {
		case apierrors.IsNotFound(err):
			absent = append(absent, name)
		case err != nil:
			return nil, fmt.Errorf("reading CustomResourceDefinition %s: %w", name, err)
		}
	}
	return absent, nil
}

// whenInstalled registers a function (adding watches) to run once cert-manager is installed.
func (d *certManagerDetector) whenInstalled(f func() error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onReady = append(d.onReady, f)
}

// check reports what is missing; when nothing is, it runs the registered functions once.
func (d *certManagerDetector) check(ctx context.Context) (missing []string, err error) {
	missing, err = d.missing(ctx)
	if err != nil || len(missing) > 0 {
		return missing, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return nil, nil
	}
	for _, f := range d.onReady {
		if err := f(); err != nil {
			return nil, fmt.Errorf("watching cert-manager kinds: %w", err)
		}
	}
	d.started = true
	return nil, nil
}

// certManagerLease is the leader-election Lease cert-manager's controller renews while it runs
// (upstream's defaults). Its age tells whether anyone issues and renews certificates.
var certManagerLease = client.ObjectKey{Namespace: "kube-system", Name: "cert-manager-controller"}

// leaseGrace is how late a renewal may be before the controller counts as stopped.
const leaseGrace = 30 * time.Second

// stalled reports, with a message, when cert-manager's controller has stopped renewing its
// Lease. No Lease (leader election off, or another namespace) means there is nothing to judge.
// While it runs, lapsesAt is when it will count as stopped unless renewed again: renewals are
// watched, a lapse is not, so the caller looks again then.
func (d *certManagerDetector) stalled(ctx context.Context, now time.Time) (stalled bool, msg string, lapsesAt time.Time, err error) {
	var lease coordinationv1.Lease
	err = d.reader.Get(ctx, certManagerLease, &lease)
	if apierrors.IsNotFound(err) {
		return false, "", time.Time{}, nil
	}
	if err != nil {
		return false, "", time.Time{}, fmt.Errorf("reading Lease %s: %w", certManagerLease, err)
	}
	if lease.Spec.RenewTime == nil {
		return false, "", time.Time{}, nil
	}
	duration := 15 * time.Second
	if lease.Spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	}
	renewed := lease.Spec.RenewTime.Time
	if lapse := renewed.Add(duration + leaseGrace); !now.After(lapse) {
		return false, "", lapse.Add(time.Second), nil
	}
	return true, fmt.Sprintf("cert-manager's controller is not running: its Lease %s was last renewed at %s; "+
		"no certificate is issued or renewed until it runs again (check its Deployment, e.g. kubectl -n cert-manager get deployments)",
		certManagerLease, renewed.UTC().Format(time.RFC3339)), time.Time{}, nil
}

func missingMessage(missing []string) string {
	return fmt.Sprintf("cert-manager is not installed: CustomResourceDefinition %s not found; %s",
		strings.Join(missing, ", "), CertManagerInstallHint)
}
