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

package integration

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/knit-mesh/knit/controllers"
)

// writeCounter is a real client (to the real API server) that records every write it makes, so
// a spec can assert that a reconcile with nothing to do writes nothing.
type writeCounter struct {
	client.Client
	mu  sync.Mutex
	log []string
}

func (w *writeCounter) record(verb string, obj client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, fmt.Sprintf("%s %T %s", verb, obj, client.ObjectKeyFromObject(obj)))
}

// recordPatch also keeps what the patch would change, so a failing spec says which field moved.
func (w *writeCounter) recordPatch(verb string, obj client.Object, patch client.Patch) {
	body, err := patch.Data(obj)
	if err != nil {
		body = []byte(err.Error())
	}
	const limit = 2000
	if len(body) > limit {
		body = append(body[:limit:limit], "..."...)
	}
	w.record(fmt.Sprintf("%s (%s %s)", verb, patch.Type(), body), obj)
}

func (w *writeCounter) writes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.log...)
}

func (w *writeCounter) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = nil
}

func (w *writeCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	w.record("create", obj)
	return w.Client.Create(ctx, obj, opts...)
}

func (w *writeCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	w.record("update", obj)
	return w.Client.Update(ctx, obj, opts...)
}

func (w *writeCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	w.recordPatch("patch", obj, patch)
	return w.Client.Patch(ctx, obj, patch, opts...)
}

func (w *writeCounter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	w.record("delete", obj)
	return w.Client.Delete(ctx, obj, opts...)
}

func (w *writeCounter) Status() client.SubResourceWriter {
	return &statusCounter{SubResourceWriter: w.Client.Status(), w: w}
}

type statusCounter struct {
	client.SubResourceWriter
	w *writeCounter
}

func (s *statusCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.w.record("status update", obj)
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *statusCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.w.recordPatch("status patch", obj, patch)
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// suiteMeshReconciler is the Mesh reconciler as the suite's manager runs it.
func suiteMeshReconciler(c client.Client) *controllers.MeshReconciler {
	return &controllers.MeshReconciler{
		Client:                 c,
		OperatorNamespace:      operatorNamespace,
		OperatorServiceAccount: operatorServiceAccount,
		// Short, so the upgrade specs see a retired revision go without waiting long.
		RevisionGracePeriod: 2 * time.Second,
		UpgradePollInterval: 300 * time.Millisecond,
		RootRotationHold:    rootRotationHold,
	}
}

// newMeshReconciler and newRevisionReconciler are configured exactly as the suite's manager runs
// them: a reconciler configured otherwise (another operator namespace, another rotation hold,
// Gateway API unknown) would decide another status, and the two would take turns rewriting it.
func newMeshReconciler(c client.Client) *controllers.MeshReconciler {
	r := suiteMeshReconciler(c)
	Expect(r.DetectOptionalAPIs(c.RESTMapper())).To(Succeed())
	return r
}

func newRevisionReconciler(c client.Client) *controllers.MeshRevisionReconciler {
	return &controllers.MeshRevisionReconciler{Client: c, OperatorNamespace: operatorNamespace}
}

func requestFor(name string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
}

func intOrString(s string) intstr.IntOrString { return intstr.FromString(s) }

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// controllerutilCreateOrPatchLabels creates the object or sets the given labels on it; an empty
// value removes a label.
func controllerutilCreateOrPatchLabels(ctx context.Context, obj client.Object, labels map[string]string) (controllerutil.OperationResult, error) {
	return controllerutil.CreateOrPatch(ctx, k8sClient, obj, func() error {
		l := obj.GetLabels()
		if l == nil {
			l = map[string]string{}
		}
		for k, v := range labels {
			if v == "" {
				delete(l, k)
			} else {
				l[k] = v
			}
		}
		obj.SetLabels(l)
		return nil
	})
}
