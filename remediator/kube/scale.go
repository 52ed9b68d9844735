package kube

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/companion/remediator/remediator/action"
)

// scale sets the replica count of a Deployment or StatefulSet through its
// scale subresource: Replicas, or the current count plus Delta, clamped to
// Min and Max (zero means unbounded). Zero replicas are refused unless
// AllowZero. When a HorizontalPodAutoscaler targets the workload, a direct
// write would be undone, so scale refuses with the autoscaler's bounds, or,
// when RaiseHPAMin is set and the count is within its maxReplicas, raises
// its minReplicas to the count and scales to it.
func (e *Executor) scale(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	p := req.Params
	if (p.Replicas == nil) == (p.Delta == nil) {
		return action.Result{}, action.Terminal(errors.New(
			"scale needs exactly one of replicas (absolute) or delta (relative)"))
	}
	if p.Max > 0 && p.Min > p.Max {
		return action.Result{}, action.Terminal(fmt.Errorf(
			"scale bounds are inverted: min %d is above max %d", p.Min, p.Max))
	}
	return retry(ctx, e.log, "scale", func(ctx context.Context) (action.Result, error) {
		return e.scaleOnce(ctx, req, t)
	})
}

func (e *Executor) scaleOnce(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	sc, err := e.getScale(ctx, t)
	if err != nil {
		return action.Result{}, err
	}
	current := sc.Spec.Replicas
	want := desiredReplicas(current, req.Params)
	if want == 0 && !req.Params.AllowZero {
		return action.Result{}, action.Terminal(fmt.Errorf(
			"refused: scaling to 0 replicas (from %d) needs the playbook to allow zero", current))
	}
	res := action.Result{
		Details: map[string]string{
			"replicas_before": strconv.Itoa(int(current)),
			"replicas":        strconv.Itoa(int(want)),
		},
	}

	hpa, err := e.autoscalerFor(ctx, t)
	if err != nil {
		return action.Result{}, err
	}
	if hpa != nil {
		raised, err := e.raiseAutoscalerMin(ctx, req, hpa, want)
		if err != nil {
			return action.Result{}, err
		}
		res.Details["hpa"] = hpa.Name
		if raised {
			res.Changed = true
			res.Details["hpa_min_replicas"] = strconv.Itoa(int(want))
		}
	}

	if want == current {
		res.Summary = fmt.Sprintf("already at %d replicas", current)
		if res.Changed {
			res.Summary += fmt.Sprintf("; raised the autoscaler's minReplicas to %d", want)
		}
		return res, nil
	}
	sc.Spec.Replicas = want
	if err := e.updateScale(ctx, req, t, sc); err != nil {
		return action.Result{}, err
	}
	res.Changed = true
	res.Summary = fmt.Sprintf("scaled from %d to %d replicas", current, want)
	return res, nil
}

// desiredReplicas applies the requested count or change to current and
// clamps the result to the playbook's bounds and to zero.
func desiredReplicas(current int32, p action.Params) int32 {
	want := current
	if p.Replicas != nil {
		want = *p.Replicas
	} else {
		want += *p.Delta
	}
	if p.Max > 0 && want > p.Max {
		want = p.Max
	}
	return max(want, p.Min, 0)
}

// autoscalerFor returns the HorizontalPodAutoscaler in t's namespace whose
// scale target is t, or nil.
func (e *Executor) autoscalerFor(
	ctx context.Context,
	t action.Target,
) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	list, err := e.client.AutoscalingV2().HorizontalPodAutoscalers(t.Namespace).List(ctx,
		metav1.ListOptions{})
	if err != nil {
		return nil, classify(err, "list", "horizontalpodautoscalers.autoscaling", t.Namespace)
	}
	for i, h := range list.Items {
		ref := h.Spec.ScaleTargetRef
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err == nil && ref.Kind == t.Kind && ref.Name == t.Name && gv.Group == "apps" {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// raiseAutoscalerMin decides what to do with an autoscaler in the way of a
// scale to want. Without the playbook's consent, or when want lies outside
// what raising minReplicas can reach, it refuses with the bounds. Otherwise
// it raises minReplicas to want and reports whether it wrote anything.
func (e *Executor) raiseAutoscalerMin(
	ctx context.Context,
	req action.Request,
	hpa *autoscalingv2.HorizontalPodAutoscaler,
	want int32,
) (bool, error) {
	minR := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minR = *hpa.Spec.MinReplicas
	}
	maxR := hpa.Spec.MaxReplicas
	bounds := fmt.Sprintf("HorizontalPodAutoscaler %s scales this workload "+
		"(minReplicas %d, maxReplicas %d)", hpa.Name, minR, maxR)
	switch {
	case !req.Params.RaiseHPAMin:
		return false, action.Terminal(fmt.Errorf(
			"refused: %s and would undo %d replicas; let the playbook raise its minReplicas instead",
			bounds, want))
	case want < minR:
		return false, action.Terminal(fmt.Errorf(
			"refused: %s; %d replicas is below its minReplicas, which is only ever raised",
			bounds, want))
	case want > maxR:
		return false, action.Terminal(fmt.Errorf(
			"refused: %s; %d replicas is above its maxReplicas", bounds, want))
	case want == minR:
		return false, nil
	}
	hpa.Spec.MinReplicas = &want
	_, err := e.client.AutoscalingV2().HorizontalPodAutoscalers(hpa.Namespace).Update(ctx, hpa,
		metav1.UpdateOptions{DryRun: dryRun(req)})
	if err != nil {
		return false, classify(err, "update", "horizontalpodautoscalers.autoscaling",
			hpa.Namespace)
	}
	return true, nil
}

func (e *Executor) getScale(ctx context.Context, t action.Target) (*autoscalingv1.Scale, error) {
	var (
		sc  *autoscalingv1.Scale
		err error
	)
	if t.Kind == action.KindStatefulSet {
		sc, err = e.client.AppsV1().StatefulSets(t.Namespace).GetScale(ctx, t.Name,
			metav1.GetOptions{})
		return sc, classify(err, "get", "statefulsets.apps/scale", t.Namespace)
	}
	sc, err = e.client.AppsV1().Deployments(t.Namespace).GetScale(ctx, t.Name,
		metav1.GetOptions{})
	return sc, classify(err, "get", "deployments.apps/scale", t.Namespace)
}

// updateScale writes sc back with the resourceVersion it was read at, so a
// concurrent change to the replica count conflicts instead of being lost.
func (e *Executor) updateScale(
	ctx context.Context,
	req action.Request,
	t action.Target,
	sc *autoscalingv1.Scale,
) error {
	opts := metav1.UpdateOptions{DryRun: dryRun(req)}
	if t.Kind == action.KindStatefulSet {
		_, err := e.client.AppsV1().StatefulSets(t.Namespace).UpdateScale(ctx, t.Name, sc, opts)
		return classify(err, "update", "statefulsets.apps/scale", t.Namespace)
	}
	_, err := e.client.AppsV1().Deployments(t.Namespace).UpdateScale(ctx, t.Name, sc, opts)
	return classify(err, "update", "deployments.apps/scale", t.Namespace)
}
