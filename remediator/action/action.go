// Package action defines what a playbook step asks of a cluster and the
// Executor interface that carries it out. The plan-only executor in this
// package records what it would do; package kube carries the same requests
// out through client-go.
package action

import (
	"context"
	"errors"
	"time"
)

// Type names one kind of action a step can take on a workload.
type Type string

// The actions an executor understands.
const (
	Restart        Type = "restart"
	Rollback       Type = "rollback"
	Scale          Type = "scale"
	DeletePod      Type = "delete-pod"
	WaitForRollout Type = "wait-for-rollout"
)

// Workload kinds a target may name.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
)

// Target is the workload a step acts on. Kind is Deployment or StatefulSet;
// when Kind is empty and Pod is set, the executor resolves the owning
// workload through the pod's owner references.
type Target struct {
	Kind      string
	Namespace string
	Name      string
	Pod       string
}

// String returns the target as kind namespace/name, the form used in logs
// and messages.
func (t Target) String() string {
	kind := t.Kind
	if kind == "" {
		kind = "pod-owner"
	}
	name := t.Name
	if name == "" {
		name = t.Pod
	}
	return kind + " " + t.Namespace + "/" + name
}

// Key identifies the target in the state store (cooldowns, budgets, locks).
func (t Target) Key() string {
	name := t.Name
	if name == "" {
		name = "pod:" + t.Pod
	}
	return t.Kind + "/" + t.Namespace + "/" + name
}

// Params holds the settings of one action. Only the fields that belong to the
// request's Type are read.
type Params struct {
	// Scale: exactly one of Replicas (absolute) or Delta (relative) is set.
	Replicas *int32
	Delta    *int32
	// Min and Max clamp the computed replica count.
	Min, Max int32
	// AllowZero permits scaling to zero replicas.
	AllowZero bool
	// RaiseHPAMin lets scale raise an HPA's minReplicas instead of refusing.
	RaiseHPAMin bool

	// AllowPodDeletion lets restart delete the pods of an OnDelete
	// StatefulSet one at a time.
	AllowPodDeletion bool

	// DeletePod: pods whose restart count exceeds RestartThreshold, or that
	// wait in CrashLoopBackOff, are deleted while at least MinReady stay ready.
	RestartThreshold int32
	MinReady         int32

	// Timeout bounds wait-for-rollout and the retries of any action.
	Timeout time.Duration
}

// Request is one action to take on one target.
type Request struct {
	Action Type
	Target Target
	Params Params
	// DryRun sends the request with server-side dry run: validated and
	// admitted by the API server, nothing changed.
	DryRun bool
	// RunID identifies the playbook run that asked, for logs and audit.
	RunID string
}

// Result says what an action did.
type Result struct {
	// Changed is true when the cluster was (or, for a dry run, would be)
	// changed.
	Changed bool
	// Summary is one human-readable line.
	Summary string
	// Details carries before/after facts: revisions, replica counts, pods.
	Details map[string]string
	// DryRun is true when nothing was persisted.
	DryRun bool
	// Planned is true when the executor only recorded the request.
	Planned bool
}

// Executor carries out actions on a cluster.
type Executor interface {
	// Name is a short word for logs: "plan-only" or "kubernetes".
	Name() string
	// Execute performs req. The context carries the run's deadline.
	Execute(ctx context.Context, req Request) (Result, error)
}

// TerminalError marks a failure that must not be retried: a refusal (paused
// deployment, no previous revision, HPA bounds), a validation error or a
// missing permission.
type TerminalError struct{ Err error }

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// Terminal wraps err so that IsTerminal reports true for it.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &TerminalError{Err: err}
}

// IsTerminal reports whether err, or any error it wraps, is terminal.
func IsTerminal(err error) bool {
	var t *TerminalError
	return errors.As(err, &t)
}

// Resolver is implemented by executors that can find the workload that owns
// a pod target, so that guards and locks apply to the workload and not to
// one of its pods.
type Resolver interface {
	Resolve(ctx context.Context, t Target) (Target, error)
}

// GoodMarker is implemented by executors that remember the revision a
// workload runs once a run verified it healthy, for later rollbacks.
type GoodMarker interface {
	MarkGood(ctx context.Context, t Target) (string, error)
}
