package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/companion/remediator/remediator/action"
)

// RestartedAtAnnotation is the pod template annotation kubectl rollout
// restart sets; changing it makes the controller replace every pod.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// restart rolls a Deployment or StatefulSet out again, as kubectl rollout
// restart does, by stamping the current time on its pod template. A paused
// Deployment is refused. A stamp equal to the one already there (a second
// restart within the same second) is reported as already in progress. An
// OnDelete StatefulSet gets the new template, but its pods only restart when
// the playbook allows deleting them, one at a time.
func (e *Executor) restart(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	res, err := retry(ctx, e.log, "restart", func(ctx context.Context) (action.Result, error) {
		if t.Kind == action.KindStatefulSet {
			return e.restartStatefulSet(ctx, req, t)
		}
		return e.restartDeployment(ctx, req, t)
	})
	if err != nil || res.Details["update_strategy"] != string(appsv1.OnDeleteStatefulSetStrategyType) {
		return res, err
	}
	if !req.Params.AllowPodDeletion {
		res.Summary = "template changed, no pod restarted: the statefulset's updateStrategy " +
			"is OnDelete and the playbook does not allow deleting its pods"
		res.Details["pods_restarted"] = "0"
		return res, nil
	}
	return e.rollStatefulSetPods(ctx, req, t, res)
}

func (e *Executor) restartDeployment(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	d, err := e.client.AppsV1().Deployments(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return action.Result{}, classify(err, "get", "deployments.apps", t.Namespace)
	}
	if d.Spec.Paused {
		return action.Result{}, action.Terminal(errors.New(
			"deployment is paused: resume it first (kubectl rollout resume); " +
				"the remediator never resumes a paused deployment"))
	}
	res, patch, err := e.restartPatch(d.ObjectMeta, d.Spec.Template.Annotations)
	if err != nil || patch == nil {
		return res, err
	}
	res.Details["revision_before"] = d.Annotations[revisionAnnotation]
	_, err = e.client.AppsV1().Deployments(t.Namespace).Patch(ctx, t.Name,
		types.StrategicMergePatchType, patch, metav1.PatchOptions{DryRun: dryRun(req)})
	if err != nil {
		return action.Result{}, classify(err, "patch", "deployments.apps", t.Namespace)
	}
	return res, nil
}

func (e *Executor) restartStatefulSet(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	sts, err := e.client.AppsV1().StatefulSets(t.Namespace).Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return action.Result{}, classify(err, "get", "statefulsets.apps", t.Namespace)
	}
	res, patch, err := e.restartPatch(sts.ObjectMeta, sts.Spec.Template.Annotations)
	if err != nil || patch == nil {
		return res, err
	}
	res.Details["update_strategy"] = string(sts.Spec.UpdateStrategy.Type)
	_, err = e.client.AppsV1().StatefulSets(t.Namespace).Patch(ctx, t.Name,
		types.StrategicMergePatchType, patch, metav1.PatchOptions{DryRun: dryRun(req)})
	if err != nil {
		return action.Result{}, classify(err, "patch", "statefulsets.apps", t.Namespace)
	}
	return res, nil
}

// restartPatch builds the patch that stamps the restart time on a pod
// template, or returns a nil patch and an "already in progress" result when
// the stamp is already there. The patch carries the resourceVersion that was
// read, so that it fails with a conflict, and is decided again, if the
// workload changed in between (paused, for one).
func (e *Executor) restartPatch(
	meta metav1.ObjectMeta,
	templateAnnotations map[string]string,
) (action.Result, []byte, error) {
	stamp := e.now().Format(time.RFC3339)
	if templateAnnotations[RestartedAtAnnotation] == stamp {
		return action.Result{
			Summary: "restart already in progress: restarted at " + stamp,
			Details: map[string]string{"restarted_at": stamp},
		}, nil, nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": meta.ResourceVersion},
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{RestartedAtAnnotation: stamp},
		}}},
	})
	if err != nil {
		return action.Result{}, nil, fmt.Errorf("encode restart patch: %w", err)
	}
	return action.Result{
		Changed: true,
		Summary: "restarted at " + stamp,
		Details: map[string]string{"restarted_at": stamp},
	}, patch, nil
}

// rollStatefulSetPods deletes the pods of an OnDelete StatefulSet that do
// not run its newest revision, one at a time, highest ordinal first, waiting
// for each replacement to be ready before the next, as the controller does
// for RollingUpdate.
func (e *Executor) rollStatefulSetPods(
	ctx context.Context,
	req action.Request,
	t action.Target,
	res action.Result,
) (action.Result, error) {
	sts, err := e.observedStatefulSet(ctx, t)
	if err != nil {
		return res, fmt.Errorf("template changed, pods not restarted: %w", err)
	}
	pods, err := e.workloadPods(ctx, t.Namespace, sts.UID, sts.Spec.Selector)
	if err != nil {
		return res, fmt.Errorf("template changed, pods not restarted: %w", err)
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return ordinal(b.Name) - ordinal(a.Name) })

	var restarted []string
	for _, p := range pods {
		if !req.DryRun && p.Labels[appsv1.ControllerRevisionHashLabelKey] == sts.Status.UpdateRevision {
			continue
		}
		if err := e.deletePod(ctx, req, p); err != nil {
			return res, fmt.Errorf("template changed, restarted pods [%s], then: %w",
				strings.Join(restarted, ", "), err)
		}
		if !req.DryRun {
			if err := e.waitPodReplaced(ctx, p); err != nil {
				return res, fmt.Errorf("template changed, restarted pods [%s], then: %w",
					strings.Join(restarted, ", "), err)
			}
		}
		restarted = append(restarted, p.Name)
	}
	res.Summary = fmt.Sprintf("restarted %d pods of an OnDelete statefulset one at a time",
		len(restarted))
	res.Details["pods_restarted"] = strconv.Itoa(len(restarted))
	res.Details["pods"] = strings.Join(restarted, ",")
	return res, nil
}

// observedStatefulSet waits until the StatefulSet controller has seen the
// latest spec, so that its update revision is the new template's.
func (e *Executor) observedStatefulSet(
	ctx context.Context,
	t action.Target,
) (*appsv1.StatefulSet, error) {
	for {
		sts, err := e.client.AppsV1().StatefulSets(t.Namespace).Get(ctx, t.Name,
			metav1.GetOptions{})
		if err != nil && !transient(err) {
			return nil, classify(err, "get", "statefulsets.apps", t.Namespace)
		}
		if err == nil && sts.Status.ObservedGeneration >= sts.Generation &&
			sts.Status.UpdateRevision != "" {
			return sts, nil
		}
		if err := sleep(ctx, e.pollEvery); err != nil {
			return nil, fmt.Errorf("wait for the statefulset controller to observe it: %w", err)
		}
	}
}

// waitPodReplaced waits until a pod of the same name but another UID is
// ready: the StatefulSet controller's replacement for old.
func (e *Executor) waitPodReplaced(ctx context.Context, old corev1.Pod) error {
	for {
		p, err := e.client.CoreV1().Pods(old.Namespace).Get(ctx, old.Name, metav1.GetOptions{})
		switch {
		case err == nil && p.UID != old.UID && podReady(p):
			return nil
		case err != nil && !apierrors.IsNotFound(err) && !transient(err):
			return classify(err, "get", "pods", old.Namespace)
		}
		if err := sleep(ctx, e.pollEvery); err != nil {
			return fmt.Errorf("wait for pod %s to be replaced and ready: %w", old.Name, err)
		}
	}
}

// ordinal is the number a StatefulSet pod's name ends with, or -1.
func ordinal(pod string) int {
	i := strings.LastIndexByte(pod, '-')
	n, err := strconv.Atoi(pod[i+1:])
	if err != nil {
		return -1
	}
	return n
}
