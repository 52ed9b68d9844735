package kube

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/companion/remediator/remediator/action"
)

// progressDeadlineExceeded is the reason of a Deployment's Progressing
// condition once the rollout has stalled past progressDeadlineSeconds.
const progressDeadlineExceeded = "ProgressDeadlineExceeded"

// waitForRollout waits, until the action's deadline, for the checks kubectl
// rollout status makes: the controller observed the latest generation, every
// replica is updated, no old replica is left, and the updated ones are
// available (ready, for a StatefulSet, and on the update revision). A
// Deployment past its progress deadline fails at once. A dry run reports the
// status once instead of waiting, since nothing was changed to wait for.
func (e *Executor) waitForRollout(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	last := "no status read yet"
	for {
		status, done, err := e.rolloutStatus(ctx, t)
		if err != nil && outOfTime(ctx, err) {
			return action.Result{}, fmt.Errorf("rollout not finished: %s: %w", last, ctx.Err())
		}
		if err != nil && !transient(err) {
			return action.Result{}, err
		}
		if err == nil {
			last = status
		}
		if done || req.DryRun {
			return action.Result{Summary: status, Details: map[string]string{
				"rolled_out": strconv.FormatBool(done),
			}}, nil
		}
		if err := sleep(ctx, e.pollEvery); err != nil {
			return action.Result{}, fmt.Errorf("rollout not finished: %s: %w", last, err)
		}
	}
}

// rolloutStatus reads the target once and says where its rollout stands.
func (e *Executor) rolloutStatus(ctx context.Context, t action.Target) (string, bool, error) {
	if t.Kind == action.KindStatefulSet {
		sts, err := e.client.AppsV1().StatefulSets(t.Namespace).Get(ctx, t.Name,
			metav1.GetOptions{})
		if err != nil {
			return "status unknown", false, classify(err, "get", "statefulsets.apps", t.Namespace)
		}
		return statefulSetStatus(sts)
	}
	d, err := e.client.AppsV1().Deployments(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return "status unknown", false, classify(err, "get", "deployments.apps", t.Namespace)
	}
	return deploymentStatus(d)
}

func deploymentStatus(d *appsv1.Deployment) (string, bool, error) {
	st := d.Status
	if d.Generation > st.ObservedGeneration {
		return "waiting for the deployment controller to observe the new spec", false, nil
	}
	for _, c := range st.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == progressDeadlineExceeded {
			return "", false, action.Terminal(fmt.Errorf(
				"rollout exceeded its progress deadline: %s", c.Message))
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	switch {
	case st.UpdatedReplicas < want:
		return fmt.Sprintf("%d of %d new replicas updated", st.UpdatedReplicas, want), false, nil
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("%d old replicas pending termination",
			st.Replicas-st.UpdatedReplicas), false, nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("%d of %d updated replicas available",
			st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("rolled out: %d replicas updated and available", st.UpdatedReplicas),
		true, nil
}

func statefulSetStatus(sts *appsv1.StatefulSet) (string, bool, error) {
	if sts.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		return "", false, action.Terminal(fmt.Errorf(
			"rollout status needs updateStrategy RollingUpdate, the statefulset uses %s",
			sts.Spec.UpdateStrategy.Type))
	}
	st := sts.Status
	if st.ObservedGeneration == 0 || sts.Generation > st.ObservedGeneration {
		return "waiting for the statefulset controller to observe the new spec", false, nil
	}
	want := int32(1)
	if sts.Spec.Replicas != nil {
		want = *sts.Spec.Replicas
	}
	if st.ReadyReplicas < want {
		return fmt.Sprintf("%d of %d pods ready", st.ReadyReplicas, want), false, nil
	}
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil &&
		*ru.Partition > 0 {
		if st.UpdatedReplicas < want-*ru.Partition {
			return fmt.Sprintf("partitioned rollout: %d of %d new pods updated",
				st.UpdatedReplicas, want-*ru.Partition), false, nil
		}
		return fmt.Sprintf("partitioned rollout done: %d new pods updated",
			st.UpdatedReplicas), true, nil
	}
	if st.UpdateRevision != st.CurrentRevision {
		return fmt.Sprintf("%d pods at revision %s, waiting for the rest",
			st.UpdatedReplicas, st.UpdateRevision), false, nil
	}
	return fmt.Sprintf("rolled out: %d pods at revision %s", st.CurrentReplicas,
		st.CurrentRevision), true, nil
}
