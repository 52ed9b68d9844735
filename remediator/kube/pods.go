package kube

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/companion/remediator/remediator/action"
)

// crashLoopReason is the waiting reason the kubelet gives a container it
// holds back after repeated crashes.
const crashLoopReason = "CrashLoopBackOff"

// deletePods deletes the target's crash-looping pods: those with a container
// waiting in CrashLoopBackOff, or restarted more than RestartThreshold times
// when that is set. When the target names a pod, only that pod is judged.
// A pod that is ready is deleted only while the ready pods left are at least
// MinReady. Deleting nothing because of that is a terminal refusal.
func (e *Executor) deletePods(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	return retry(ctx, e.log, "delete-pod", func(ctx context.Context) (action.Result, error) {
		return e.deletePodsOnce(ctx, req, t)
	})
}

func (e *Executor) deletePodsOnce(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	pods, err := e.targetPods(ctx, t)
	if err != nil {
		return action.Result{}, err
	}
	if t.Pod != "" {
		pods = slices.DeleteFunc(pods, func(p corev1.Pod) bool { return p.Name != t.Pod })
		if len(pods) == 0 {
			return action.Result{}, action.Terminal(fmt.Errorf(
				"pod %s is not a live pod of this workload", t.Pod))
		}
	}
	ready := 0
	var crashing []corev1.Pod
	for _, p := range pods {
		if podReady(&p) {
			ready++
		}
		if crashLooping(&p, req.Params.RestartThreshold) {
			crashing = append(crashing, p)
		}
	}
	if len(crashing) == 0 {
		return action.Result{
			Summary: "no crash-looping pods",
			Details: map[string]string{"ready": strconv.Itoa(ready)},
		}, nil
	}
	slices.SortStableFunc(crashing, func(a, b corev1.Pod) int { return restarts(&b) - restarts(&a) })

	var deleted, kept []string
	for _, p := range crashing {
		if podReady(&p) && int32(ready-1) < req.Params.MinReady {
			kept = append(kept, p.Name)
			continue
		}
		if err := e.deletePod(ctx, req, p); err != nil {
			return action.Result{}, err
		}
		if podReady(&p) {
			ready--
		}
		deleted = append(deleted, p.Name)
	}
	details := map[string]string{
		"deleted":   strings.Join(deleted, ","),
		"kept":      strings.Join(kept, ","),
		"ready":     strconv.Itoa(ready),
		"min_ready": strconv.Itoa(int(req.Params.MinReady)),
	}
	if len(deleted) == 0 {
		return action.Result{Details: details}, action.Terminal(fmt.Errorf(
			"refused: deleting crash-looping pods [%s] would leave fewer than %d ready pods",
			strings.Join(kept, ", "), req.Params.MinReady))
	}
	summary := fmt.Sprintf("deleted %d crash-looping pods (%d ready left, minimum %d)",
		len(deleted), ready, req.Params.MinReady)
	if len(kept) > 0 {
		summary += fmt.Sprintf("; kept %d ready ones to stay at the minimum", len(kept))
	}
	return action.Result{Changed: true, Summary: summary, Details: details}, nil
}

// deletePod deletes p, and only p: a precondition on its UID turns a
// replacement with the same name into a conflict, so it is judged again.
func (e *Executor) deletePod(ctx context.Context, req action.Request, p corev1.Pod) error {
	uid := p.UID
	err := e.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid},
		DryRun:        dryRun(req),
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return classify(err, "delete", "pods", p.Namespace)
}

// targetPods lists the live pods of the target workload: matched by its
// selector and controlled by it (for a Deployment, through one of its
// ReplicaSets). Pods already being deleted are left out.
func (e *Executor) targetPods(ctx context.Context, t action.Target) ([]corev1.Pod, error) {
	if t.Kind == action.KindStatefulSet {
		sts, err := e.client.AppsV1().StatefulSets(t.Namespace).Get(ctx, t.Name,
			metav1.GetOptions{})
		if err != nil {
			return nil, classify(err, "get", "statefulsets.apps", t.Namespace)
		}
		return e.workloadPods(ctx, t.Namespace, sts.UID, sts.Spec.Selector)
	}
	d, err := e.client.AppsV1().Deployments(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return nil, classify(err, "get", "deployments.apps", t.Namespace)
	}
	owned, err := e.ownedReplicaSets(ctx, d)
	if err != nil {
		return nil, err
	}
	var pods []corev1.Pod
	for _, rs := range owned {
		p, err := e.workloadPods(ctx, t.Namespace, rs.UID, d.Spec.Selector)
		if err != nil {
			return nil, err
		}
		pods = append(pods, p...)
	}
	return pods, nil
}

// workloadPods lists the live pods selected by sel whose controller has uid.
func (e *Executor) workloadPods(
	ctx context.Context,
	ns string,
	uid types.UID,
	sel *metav1.LabelSelector,
) ([]corev1.Pod, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, action.Terminal(fmt.Errorf("workload has an invalid selector: %w", err))
	}
	list, err := e.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return nil, classify(err, "list", "pods", ns)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool {
		ref := metav1.GetControllerOf(&p)
		return ref == nil || ref.UID != uid || p.DeletionTimestamp != nil
	}), nil
}

// crashLooping reports whether a container of p waits in CrashLoopBackOff,
// or, with threshold above zero, has restarted more than threshold times.
func crashLooping(p *corev1.Pod, threshold int32) bool {
	statuses := slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
	for _, cs := range statuses {
		if cs.State.Waiting != nil && cs.State.Waiting.Reason == crashLoopReason {
			return true
		}
		if threshold > 0 && cs.RestartCount > threshold {
			return true
		}
	}
	return false
}

func restarts(p *corev1.Pod) int {
	n := 0
	for _, cs := range p.Status.ContainerStatuses {
		n += int(cs.RestartCount)
	}
	return n
}

// podReady reports whether p's Ready condition is true.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
