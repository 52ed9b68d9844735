package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/companion/remediator/remediator/action"
)

// RevisionStore is the part of the shared state store (state.Store) that the
// executor uses to remember revisions across runs, replicas and restarts.
type RevisionStore interface {
	Put(ctx context.Context, bucket, key string, value []byte) error
	Get(ctx context.Context, bucket, key string) ([]byte, bool, error)
}

// RevisionBucket is the bucket of the RevisionStore the executor writes to;
// keys are namespace/name of a Deployment.
const RevisionBucket = "kube-revisions"

// maxBad bounds how many rolled-back-from ReplicaSets are remembered per
// Deployment; the oldest are forgotten first.
const maxBad = 20

// history is what the remediator knows about one Deployment's revisions.
// ReplicaSets are named rather than revision numbers, because a rollback
// gives the restored ReplicaSet a new number while its name, derived from
// the pod template, stays.
type history struct {
	// Good is the ReplicaSet last known to run well (see MarkGood).
	Good         string `json:"good,omitempty"`
	GoodRevision string `json:"good_revision,omitempty"`
	// Bad lists the ReplicaSets a rollback went away from, oldest first.
	Bad []string `json:"bad,omitempty"`
	// Updated is when this record was last written.
	Updated time.Time `json:"updated"`
}

func (h *history) isBad(rs string) bool { return slices.Contains(h.Bad, rs) }

func (h *history) markBad(rs string) {
	if rs == "" || h.isBad(rs) {
		return
	}
	h.Bad = append(h.Bad, rs)
	if len(h.Bad) > maxBad {
		h.Bad = h.Bad[len(h.Bad)-maxBad:]
	}
	if h.Good == rs {
		h.Good, h.GoodRevision = "", ""
	}
}

type revisions struct{ store RevisionStore }

func revisionKey(ns, name string) string { return ns + "/" + name }

func (r *revisions) load(ctx context.Context, ns, name string) (history, error) {
	var h history
	raw, ok, err := r.store.Get(ctx, RevisionBucket, revisionKey(ns, name))
	if err != nil {
		return h, fmt.Errorf("read revision history: %w", err)
	}
	if !ok {
		return h, nil
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return history{}, fmt.Errorf("decode revision history: %w", err)
	}
	return h, nil
}

func (r *revisions) save(ctx context.Context, ns, name string, h history, now time.Time) error {
	h.Updated = now.UTC()
	raw, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encode revision history: %w", err)
	}
	if err := r.store.Put(ctx, RevisionBucket, revisionKey(ns, name), raw); err != nil {
		return fmt.Errorf("write revision history: %w", err)
	}
	return nil
}

// MarkGood records the ReplicaSet that target, a Deployment, runs now as
// its last known good revision: the one a later rollback returns to. Call it
// when a run's verification passed. It returns the revision recorded. For a
// StatefulSet it records nothing and returns "", since rollback acts on
// Deployments only.
func (e *Executor) MarkGood(ctx context.Context, target action.Target) (string, error) {
	t, err := e.resolve(ctx, target)
	if err != nil {
		return "", fmt.Errorf("mark good %s: %w", target, err)
	}
	if t.Kind != action.KindDeployment {
		return "", nil
	}
	d, err := e.client.AppsV1().Deployments(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("mark good %s: %w",
			describe(t), classify(err, "get", "deployments.apps", t.Namespace))
	}
	owned, err := e.ownedReplicaSets(ctx, d)
	if err != nil {
		return "", fmt.Errorf("mark good %s: %w", describe(t), err)
	}
	current := currentReplicaSet(d, owned)
	if current == nil {
		return "", fmt.Errorf("mark good %s: no replicaset runs its current template yet",
			describe(t))
	}
	h, err := e.revs.load(ctx, t.Namespace, t.Name)
	if err != nil {
		return "", fmt.Errorf("mark good %s: %w", describe(t), err)
	}
	h.Good, h.GoodRevision = current.Name, revisionOf(current)
	h.Bad = slices.DeleteFunc(h.Bad, func(rs string) bool { return rs == current.Name })
	if err := e.revs.save(ctx, t.Namespace, t.Name, h, e.now()); err != nil {
		return "", fmt.Errorf("mark good %s: %w", describe(t), err)
	}
	return h.GoodRevision, nil
}

// memoryStore is the RevisionStore used when none is given: it forgets
// everything when the process ends.
type memoryStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memoryStore) Put(_ context.Context, bucket, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[bucket+"\x00"+key] = slices.Clone(value)
	return nil
}

func (s *memoryStore) Get(_ context.Context, bucket, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[bucket+"\x00"+key]
	return slices.Clone(v), ok, nil
}
