// Package kube carries out playbook actions on a Kubernetes cluster through
// client-go, with the semantics of the kubectl commands an operator would
// type by hand: rollout restart, rollout undo, scale, delete pod and rollout
// status. It refuses what an operator would refuse (a paused Deployment, a
// scale an autoscaler would undo, scaling to zero, a rollback with nothing
// to go back to), classifies API errors into terminal and retryable ones,
// and supports server-side dry run for every write.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/companion/remediator/remediator/action"
)

// Timeouts applied when neither the request's Params.Timeout nor its context
// bounds an action.
const (
	DefaultActionTimeout  = time.Minute
	DefaultRolloutTimeout = 5 * time.Minute
)

// Executor is the action.Executor that changes a real cluster.
type Executor struct {
	client kubernetes.Interface
	log    *slog.Logger
	revs   *revisions
	now    func() time.Time
	// pollEvery is how often waits re-read the cluster.
	pollEvery time.Duration
}

var (
	_ action.Executor   = (*Executor)(nil)
	_ action.Resolver   = (*Executor)(nil)
	_ action.GoodMarker = (*Executor)(nil)
)

// New returns an executor for the cluster cfg describes. store keeps which
// revisions rollbacks must never return to and which one was last known
// good; pass the shared state store so that every replica and every restart
// sees the same memory. A nil store keeps it in this process only.
func New(cfg Config, logger *slog.Logger, store RevisionStore) (*Executor, error) {
	rc, err := cfg.RESTConfig()
	if err != nil {
		return nil, err
	}
	return NewForRESTConfig(rc, logger, store)
}

// NewForRESTConfig is New for a client configuration built elsewhere, such
// as one for a test control plane.
func NewForRESTConfig(
	rc *rest.Config,
	logger *slog.Logger,
	store RevisionStore,
) (*Executor, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client for %s: %w", rc.Host, err)
	}
	return newExecutor(cs, logger, store), nil
}

func newExecutor(cs kubernetes.Interface, logger *slog.Logger, store RevisionStore) *Executor {
	if store == nil {
		store = &memoryStore{}
	}
	return &Executor{
		client:    cs,
		log:       logger,
		revs:      &revisions{store: store},
		now:       time.Now,
		pollEvery: 250 * time.Millisecond,
	}
}

// Name implements action.Executor.
func (e *Executor) Name() string { return "kubernetes" }

// Execute carries out req on the cluster. Every request to the API server
// carries ctx; the action is bounded by req.Params.Timeout when set, and
// otherwise by DefaultActionTimeout (DefaultRolloutTimeout for waits).
// Errors wrap action.Terminal when retrying cannot help.
func (e *Executor) Execute(ctx context.Context, req action.Request) (action.Result, error) {
	timeout := req.Params.Timeout
	if timeout <= 0 {
		timeout = DefaultActionTimeout
		if req.Action == action.WaitForRollout || req.Params.AllowPodDeletion {
			timeout = DefaultRolloutTimeout
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	target, err := e.resolve(ctx, req.Target)
	if err != nil {
		return action.Result{}, fmt.Errorf("%s %s: %w", req.Action, req.Target, err)
	}
	res, err := e.dispatch(ctx, req, target)
	res.DryRun = req.DryRun
	if err != nil {
		return res, fmt.Errorf("%s %s: %w", req.Action, describe(target), err)
	}
	e.log.Info("kube action done",
		"action", string(req.Action), "target", describe(target), "run", req.RunID,
		"dry_run", req.DryRun, "changed", res.Changed, "summary", res.Summary)
	return res, nil
}

func (e *Executor) dispatch(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	switch req.Action {
	case action.Restart:
		return e.restart(ctx, req, t)
	case action.Rollback:
		return e.rollback(ctx, req, t)
	case action.Scale:
		return e.scale(ctx, req, t)
	case action.DeletePod:
		return e.deletePods(ctx, req, t)
	case action.WaitForRollout:
		return e.waitForRollout(ctx, req, t)
	}
	return action.Result{}, action.Terminal(fmt.Errorf("unknown action %q", req.Action))
}

// describe names a target in messages the way kubectl does: lowercase kind,
// then namespace/name.
func describe(t action.Target) string {
	return strings.ToLower(t.Kind) + " " + t.Namespace + "/" + t.Name
}

// Resolve returns the workload target t names: its kind normalised, or, for
// a pod, the Deployment or StatefulSet that runs it, with Pod kept. Errors
// are terminal when the target can never be acted on.
func (e *Executor) Resolve(ctx context.Context, t action.Target) (action.Target, error) {
	r, err := e.resolve(ctx, t)
	if err != nil {
		return r, fmt.Errorf("resolve %s: %w", t, err)
	}
	return r, nil
}

// resolve checks the target's names and settles its kind: an explicit kind
// (any case, kubectl's short names too) is normalised; a pod, named by Pod
// or by Kind "pod", is resolved through its controller owner references to
// the Deployment or StatefulSet that runs it, keeping the pod in Pod.
func (e *Executor) resolve(ctx context.Context, t action.Target) (action.Target, error) {
	if errs := validation.IsDNS1123Label(t.Namespace); len(errs) > 0 {
		return t, action.Terminal(fmt.Errorf("invalid namespace %q: %s", t.Namespace, errs[0]))
	}
	kind := strings.ToLower(t.Kind)
	if kind == "pod" || kind == "pods" || kind == "po" {
		if t.Pod == "" {
			t.Pod = t.Name
		}
		kind = ""
	}
	for _, name := range []string{t.Name, t.Pod} {
		if name == "" {
			continue
		}
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return t, action.Terminal(fmt.Errorf("invalid name %q: %s", name, errs[0]))
		}
	}
	switch kind {
	case "deployment", "deployments", "deploy":
		t.Kind = action.KindDeployment
	case "statefulset", "statefulsets", "sts":
		t.Kind = action.KindStatefulSet
	case "":
		if t.Pod == "" {
			return t, action.Terminal(errors.New("target names neither a workload kind nor a pod"))
		}
		return e.ownerOf(ctx, t.Namespace, t.Pod)
	default:
		return t, action.Terminal(fmt.Errorf(
			"unsupported kind %q: only deployment, statefulset or pod", t.Kind))
	}
	if t.Name == "" {
		return t, action.Terminal(fmt.Errorf("target %s has no name", t.Kind))
	}
	return t, nil
}

// ownerOf finds the workload that runs pod: a StatefulSet directly, or a
// Deployment through the ReplicaSet between them.
func (e *Executor) ownerOf(ctx context.Context, ns, pod string) (action.Target, error) {
	p, err := e.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return action.Target{}, fmt.Errorf("resolve owner of pod %s/%s: %w",
			ns, pod, classify(err, "get", "pods", ns))
	}
	ref := metav1.GetControllerOf(p)
	if ref != nil && ref.Kind == "ReplicaSet" {
		rs, err := e.client.AppsV1().ReplicaSets(ns).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return action.Target{}, fmt.Errorf("resolve owner of pod %s/%s: %w",
				ns, pod, classify(err, "get", "replicasets.apps", ns))
		}
		if err == nil {
			ref = metav1.GetControllerOf(rs)
		}
	}
	if ref == nil {
		return action.Target{}, action.Terminal(fmt.Errorf(
			"pod %s/%s has no Deployment or StatefulSet owner to act on", ns, pod))
	}
	switch ref.Kind {
	case action.KindDeployment, action.KindStatefulSet:
		return action.Target{Kind: ref.Kind, Namespace: ns, Name: ref.Name, Pod: pod}, nil
	}
	return action.Target{}, action.Terminal(fmt.Errorf(
		"pod %s/%s is run by %s %s, which the remediator does not act on",
		ns, pod, ref.Kind, ref.Name))
}

// dryRun returns the DryRun option of a write: all stages when req asks for
// a server-side dry run, none otherwise.
func dryRun(req action.Request) []string {
	if req.DryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}
