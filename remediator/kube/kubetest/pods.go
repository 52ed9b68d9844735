package kubetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// NotReadyLabel on a pod template keeps RunKubelet from marking its pods
// ready: they run but never pass their readiness probe, so a rollout to
// that template never completes.
const NotReadyLabel = "kubetest.companion.dev/not-ready"

// RunKubelet stands in for the kubelet in namespace ns until t ends: every
// Pending pod is marked Running with all containers started and, unless its
// labels carry NotReadyLabel, Ready. Pods already Running are left alone,
// so a status written by CrashLoop stays.
func (e *Env) RunKubelet(t testing.TB, ns string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := e.markPending(ctx, ns); err != nil && ctx.Err() == nil {
				t.Logf("kubetest kubelet in %s: %v", ns, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func (e *Env) markPending(ctx context.Context, ns string) error {
	pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || (p.Status.Phase != "" && p.Status.Phase != corev1.PodPending) {
			continue
		}
		setRunning(p, p.Labels[NotReadyLabel] == "")
		_, err := e.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("mark pod %s running: %w", p.Name, err)
		}
	}
	return nil
}

// setRunning writes the status a kubelet reports for a started pod.
func setRunning(p *corev1.Pod, ready bool) {
	now := metav1.Now()
	readiness := corev1.ConditionFalse
	if ready {
		readiness = corev1.ConditionTrue
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &now
	p.Status.PodIP = "127.0.0.1"
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: readiness, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: readiness, LastTransitionTime: now},
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		started := true
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     "docker-pullable://" + c.Image,
			ContainerID: "containerd://" + string(p.UID) + "-" + c.Name,
			Ready:       ready,
			Started:     &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{
				StartedAt: now,
			}},
		})
	}
}

// CrashLoop makes pod ns/name look as the kubelet reports a container that
// keeps crashing: Running, not Ready, its first container waiting in
// CrashLoopBackOff after restarts restarts.
func (e *Env) CrashLoop(ctx context.Context, ns, name string, restarts int32) error {
	p, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("crash-loop pod %s/%s: %w", ns, name, err)
	}
	setRunning(p, false)
	cs := &p.Status.ContainerStatuses[0]
	started := false
	cs.Started = &started
	cs.RestartCount = restarts
	cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
		Reason:  "CrashLoopBackOff",
		Message: "back-off 5m0s restarting failed container",
	}}
	cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 1,
		Reason:   "Error",
	}}
	_, err = e.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("crash-loop pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// RestrictedUser creates a real user that authenticates to the API server
// by client certificate, grants it rules in namespace ns through a Role and
// RoleBinding, and returns its client configuration once the API server's
// authorizer has seen the grant.
func (e *Env) RestrictedUser(
	t testing.TB,
	ns, name string,
	rules []rbacv1.PolicyRule,
) *rest.Config {
	t.Helper()
	ctx := context.Background()
	cfg, err := e.AddUser(name)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Rules: rules}
	if _, err := e.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: create role %s/%s: %v", ns, name, err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}},
	}
	_, err = e.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create rolebinding %s/%s: %v", ns, name, err)
	}
	if len(rules) > 0 && len(rules[0].Verbs) > 0 && len(rules[0].Resources) > 0 {
		waitAllowed(t, cfg, ns, rules[0])
	}
	return cfg
}

// waitAllowed asks the API server, as the user of cfg, until the first verb
// of rule is allowed: RBAC grants reach the authorizer through a cache.
func waitAllowed(t testing.TB, cfg *rest.Config, ns string, rule rbacv1.PolicyRule) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	group := ""
	if len(rule.APIGroups) > 0 {
		group = rule.APIGroups[0]
	}
	review := &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: rule.Verbs[0], Group: group, Resource: rule.Resources[0],
			},
		},
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(),
			review, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubetest: grant %v on %v never took effect (last error: %v)",
				rule.Verbs, rule.Resources, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
