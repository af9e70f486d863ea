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

package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/knit-mesh/knit/webhooks/injection"
)

// Identity is who a proxy proved to be: the pod its ServiceAccount token is bound to.
type Identity struct {
	Namespace, Pod, PodUID, ServiceAccount string
}

// NodeID is the node.id the contract expects from the pod: "<namespace>/<name>".
func (i Identity) NodeID() string { return i.Namespace + "/" + i.Pod }

// Authenticator turns a bearer token into an Identity. Errors are gRPC status errors.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// Extra keys the API server sets on a TokenReview of a pod-bound ServiceAccount token.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// TokenReviewer authenticates tokens with a TokenReview for the knit.dev audience.
type TokenReviewer struct {
	Client  kubernetes.Interface
	Timeout time.Duration
}

// Authenticate asks the API server who the token belongs to. A token that is not a pod-bound
// ServiceAccount token for audience knit.dev is refused with Unauthenticated; an API server that
// cannot answer is Unavailable (the proxy retries).
func (r TokenReviewer) Authenticate(ctx context.Context, token string) (Identity, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	review, err := r.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{injection.TokenAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, status.Errorf(codes.Unavailable, "reviewing the token: %v", err)
	}
	return identityFromReview(review.Status)
}

func identityFromReview(st authnv1.TokenReviewStatus) (Identity, error) {
	if !st.Authenticated {
		msg := "token not authenticated"
		if st.Error != "" {
			msg += ": " + st.Error
		}
		return Identity{}, status.Error(codes.Unauthenticated, msg)
	}
	if !slices.Contains(st.Audiences, injection.TokenAudience) {
		return Identity{}, status.Errorf(codes.Unauthenticated, "token is not for audience %s", injection.TokenAudience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" {
		return Identity{}, status.Errorf(codes.Unauthenticated, "token of %q is not a ServiceAccount token", st.User.Username)
	}
	pod := st.User.Extra[extraPodName]
	if len(pod) != 1 || pod[0] == "" {
		return Identity{}, status.Errorf(codes.Unauthenticated, "token of ServiceAccount %s/%s is not bound to a pod", ns, sa)
	}
	id := Identity{Namespace: ns, Pod: pod[0], ServiceAccount: sa}
	if uid := st.User.Extra[extraPodUID]; len(uid) == 1 {
		id.PodUID = uid[0]
	}
	return id, nil
}

// bearerToken reads "authorization: Bearer <token>" from the stream's metadata.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) != 1 {
		return "", status.Error(codes.Unauthenticated, "missing authorization metadata: send \"authorization: Bearer <token>\" with the pod's knit.dev ServiceAccount token")
	}
	token, ok := strings.CutPrefix(values[0], "Bearer ")
	if !ok || token == "" {
		return "", status.Error(codes.Unauthenticated, "authorization metadata is not \"Bearer <token>\"")
	}
	return token, nil
}

type identityKey struct{}

func withIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

func identityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// checkNode says whether node.id names the authenticated pod.
func checkNode(id Identity, nodeID string) error {
	if nodeID == "" {
		return status.Error(codes.InvalidArgument, "the first request must carry node.id (<namespace>/<pod>)")
	}
	if nodeID != id.NodeID() {
		return status.Errorf(codes.PermissionDenied, "node.id %q is not the pod the token is bound to (%s)", nodeID, id.NodeID())
	}
	return nil
}

var errNoIdentity = errors.New("stream has no authenticated identity")

func describe(err error) string {
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	return err.Error()
}
