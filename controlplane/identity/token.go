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

package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Extra keys the API server puts in a TokenReview of a pod-bound ServiceAccount token.
const (
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
)

// Workload is who a verified token speaks for.
type Workload struct {
	Namespace, ServiceAccount, Pod string
	PodUID                         types.UID
}

// claims are the token fields read before the TokenReview, to refuse the obviously wrong without
// asking the API server. The TokenReview alone decides whether the token is genuine.
type claims struct {
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	Audience audience `json:"aud"`
	// Kubernetes names the bound pod, to explain a token refused because it is gone.
	Kubernetes struct {
		Namespace string `json:"namespace"`
		Pod       struct {
			Name string `json:"name"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// audience is a JWT "aud": one string or a list.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*a = many
	return nil
}

// maxTokenBytes bounds a token: Kubernetes' pod-bound tokens are about 1 KiB.
const maxTokenBytes = 8 << 10

func readClaims(token string) (claims, error) {
	var c claims
	if len(token) > maxTokenBytes {
		return c, refuse(ReasonMalformedToken, codes.Unauthenticated, "the token is %d bytes, more than %d", len(token), maxTokenBytes)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, refuse(ReasonMalformedToken, codes.Unauthenticated, "the token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, refuse(ReasonMalformedToken, codes.Unauthenticated, "the token's payload is not base64url")
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, refuse(ReasonMalformedToken, codes.Unauthenticated, "the token's claims: %v", err)
	}
	return c, nil
}

// precheck refuses a token that is expired, lives longer than maxLifetime or is for another
// audience, by its unverified claims.
func precheck(c claims, wantAudience string, maxLifetime time.Duration, now time.Time) error {
	if c.Exp == 0 || !now.Before(time.Unix(c.Exp, 0)) {
		return refuse(ReasonTokenExpired, codes.Unauthenticated, "the token expired at %s", time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	}
	if c.Iat == 0 || time.Unix(c.Exp, 0).Sub(time.Unix(c.Iat, 0)) > maxLifetime {
		return refuse(ReasonTokenLifetime, codes.Unauthenticated,
			"the token lives from %d to %d, longer than %s: mount a projected token with expirationSeconds <= %d",
			c.Iat, c.Exp, maxLifetime, int(maxLifetime.Seconds()))
	}
	if !slices.Contains(c.Audience, wantAudience) {
		return refuse(ReasonWrongAudience, codes.Unauthenticated, "the token is for audience %v, not %q", []string(c.Audience), wantAudience)
	}
	return nil
}

// authenticate verifies the token with a TokenReview for the audience, then checks the pod it is
// bound to: it exists with that UID, is not terminating or finished, and runs as the token's
// ServiceAccount.
func (s *Server) authenticate(ctx context.Context, token string) (Workload, error) {
	c, err := readClaims(token)
	if err != nil {
		return Workload{}, err
	}
	if err := precheck(c, s.cfg.Audience, s.cfg.Limits.MaxTokenLifetime, s.now()); err != nil {
		return Workload{}, err
	}
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{s.cfg.Audience}}}
	if err := s.cfg.Client.Create(ctx, review); err != nil {
		return Workload{}, refuse(ReasonAPIUnavailable, codes.Unavailable, "TokenReview: %v", err)
	}
	st := review.Status
	if !st.Authenticated {
		return Workload{}, explainRejected(c, st.Error)
	}
	if !slices.Contains(st.Audiences, s.cfg.Audience) {
		return Workload{}, refuse(ReasonWrongAudience, codes.Unauthenticated, "the token is valid for %v, not %q", st.Audiences, s.cfg.Audience)
	}
	ns, sa, ok := serviceAccountUser(st.User.Username)
	if !ok {
		return Workload{}, refuse(ReasonTokenRejected, codes.Unauthenticated, "the token is for %q, not a ServiceAccount", st.User.Username)
	}
	pod, uid := one(st.User.Extra[extraPodName]), one(st.User.Extra[extraPodUID])
	if pod == "" || uid == "" {
		return Workload{}, refuse(ReasonNotPodBound, codes.Unauthenticated,
			"the token of ServiceAccount %s/%s is not bound to a pod: use the projected token the injector mounts", ns, sa)
	}
	w := Workload{Namespace: ns, ServiceAccount: sa, Pod: pod, PodUID: types.UID(uid)}
	return w, s.checkPod(ctx, w)
}

// explainRejected tells a proxy of a deleted pod why its token stopped working: the API server
// says only that a bound token "has been invalidated", which for a token naming a pod means
// the pod (or its ServiceAccount) is gone. It looks nothing up, so an unauthenticated caller
// learns nothing about the cluster.
func explainRejected(c claims, apiError string) error {
	ns, pod := c.Kubernetes.Namespace, c.Kubernetes.Pod.Name
	if pod != "" && strings.Contains(apiError, "has been invalidated") {
		return refuse(ReasonUnknownPod, codes.PermissionDenied,
			"the token is bound to pod %s/%s, which no longer exists (or its ServiceAccount was deleted): %s", ns, pod, apiError)
	}
	return refuse(ReasonTokenRejected, codes.Unauthenticated, "the API server did not accept the token: %s", apiError)
}

func (s *Server) checkPod(ctx context.Context, w Workload) error {
	var pod corev1.Pod
	err := s.cfg.APIReader.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: w.Pod}, &pod)
	switch {
	case apierrors.IsNotFound(err):
		return refuse(ReasonUnknownPod, codes.PermissionDenied, "pod %s/%s the token is bound to does not exist", w.Namespace, w.Pod)
	case err != nil:
		return refuse(ReasonAPIUnavailable, codes.Unavailable, "reading pod %s/%s: %v", w.Namespace, w.Pod, err)
	case pod.UID != w.PodUID:
		return refuse(ReasonUnknownPod, codes.PermissionDenied, "pod %s/%s is not the one the token is bound to (UID %s, token %s)",
			w.Namespace, w.Pod, pod.UID, w.PodUID)
	case pod.DeletionTimestamp != nil:
		return refuse(ReasonPodTerminating, codes.PermissionDenied, "pod %s/%s is terminating", w.Namespace, w.Pod)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return refuse(ReasonPodTerminating, codes.PermissionDenied, "pod %s/%s has finished (%s)", w.Namespace, w.Pod, pod.Status.Phase)
	case pod.Spec.ServiceAccountName != w.ServiceAccount:
		return refuse(ReasonServiceAccount, codes.PermissionDenied, "pod %s/%s runs as ServiceAccount %s, the token is for %s",
			w.Namespace, w.Pod, pod.Spec.ServiceAccountName, w.ServiceAccount)
	}
	return nil
}

// serviceAccountUser splits "system:serviceaccount:<ns>:<name>".
func serviceAccountUser(user string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(rest, ":")
	return namespace, name, ok && namespace != "" && name != "" && !strings.Contains(name, ":")
}

func one(values authenticationv1.ExtraValue) string {
	if len(values) != 1 {
		return ""
	}
	return values[0]
}
