package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/companion/remediator/remediator/action"
)

// Annotations the Deployment controller keeps on Deployments and their
// ReplicaSets.
const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	lastAppliedAnnotation     = "kubectl.kubernetes.io/last-applied-configuration"
)

// controllerAnnotations are the Deployment annotations a rollback keeps from
// the Deployment rather than taking them from the restored ReplicaSet, as
// kubectl rollout undo does.
var controllerAnnotations = []string{
	revisionAnnotation,
	revisionHistoryAnnotation,
	desiredReplicasAnnotation,
	maxReplicasAnnotation,
	lastAppliedAnnotation,
}

// rollback restores an earlier pod template of a Deployment, as kubectl
// rollout undo does: from the ReplicaSets it owns, ordered by revision, with
// the pod-template-hash label dropped. It goes to the ReplicaSet marked good
// (MarkGood) when there is one, and otherwise to the newest earlier revision
// that no previous rollback went away from, so a second rollback never
// returns to the template the first one left. The ReplicaSet it leaves is
// remembered as bad before the Deployment is written.
func (e *Executor) rollback(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	if t.Kind != action.KindDeployment {
		return action.Result{}, action.Terminal(errors.New(
			"rollback supports deployments only; restart or scale a statefulset instead"))
	}
	return retry(ctx, e.log, "rollback", func(ctx context.Context) (action.Result, error) {
		return e.rollbackOnce(ctx, req, t)
	})
}

func (e *Executor) rollbackOnce(
	ctx context.Context,
	req action.Request,
	t action.Target,
) (action.Result, error) {
	deployments := e.client.AppsV1().Deployments(t.Namespace)
	d, err := deployments.Get(ctx, t.Name, metav1.GetOptions{})
	if err != nil {
		return action.Result{}, classify(err, "get", "deployments.apps", t.Namespace)
	}
	if d.Spec.Paused {
		return action.Result{}, action.Terminal(errors.New(
			"deployment is paused: resume it first (kubectl rollout resume); " +
				"the remediator never resumes a paused deployment"))
	}
	owned, err := e.ownedReplicaSets(ctx, d)
	if err != nil {
		return action.Result{}, err
	}
	h, err := e.revs.load(ctx, t.Namespace, t.Name)
	if err != nil {
		return action.Result{}, err
	}
	current := currentReplicaSet(d, owned)
	to, err := rollbackTarget(d, owned, current, h)
	if err != nil {
		return action.Result{}, err
	}

	from := d.Annotations[revisionAnnotation]
	res := action.Result{
		Changed: true,
		Summary: fmt.Sprintf("rolled back from revision %s to revision %s (replicaset %s)",
			from, revisionOf(to), to.Name),
		Details: map[string]string{
			"from_revision":   from,
			"to_revision":     revisionOf(to),
			"to_replicaset":   to.Name,
			"to_images":       images(to.Spec.Template.Spec),
			"from_images":     images(d.Spec.Template.Spec),
			"known_good_used": strconv.FormatBool(h.Good == to.Name),
		},
	}
	if current != nil {
		res.Details["from_replicaset"] = current.Name
	}

	// Remember what is being left before leaving it, so that a crash between
	// the two writes still never leads back to it.
	if current != nil && !req.DryRun {
		h.markBad(current.Name)
		if err := e.revs.save(ctx, t.Namespace, t.Name, h, e.now()); err != nil {
			return action.Result{}, err
		}
	}

	d.Spec.Template = restoredTemplate(to)
	d.Annotations = rollbackAnnotations(d.Annotations, to.Annotations)
	_, err = deployments.Update(ctx, d, metav1.UpdateOptions{DryRun: dryRun(req)})
	if err != nil {
		return action.Result{}, classify(err, "update", "deployments.apps", t.Namespace)
	}
	return res, nil
}

// rollbackTarget picks the ReplicaSet to restore, or explains why there is
// none.
func rollbackTarget(
	d *appsv1.Deployment,
	owned []appsv1.ReplicaSet,
	current *appsv1.ReplicaSet,
	h history,
) (*appsv1.ReplicaSet, error) {
	usable := func(rs *appsv1.ReplicaSet) bool {
		return (current == nil || rs.Name != current.Name) &&
			!sameTemplate(rs.Spec.Template, d.Spec.Template)
	}
	for i := range owned {
		if owned[i].Name == h.Good && usable(&owned[i]) {
			return &owned[i], nil
		}
	}
	var skipped []string
	for i := range owned { // newest first
		rs := &owned[i]
		if !usable(rs) {
			continue
		}
		if h.isBad(rs.Name) {
			skipped = append(skipped, revisionOf(rs))
			continue
		}
		return rs, nil
	}
	limit := "unset"
	if d.Spec.RevisionHistoryLimit != nil {
		limit = strconv.Itoa(int(*d.Spec.RevisionHistoryLimit))
	}
	if len(skipped) > 0 {
		return nil, action.Terminal(fmt.Errorf(
			"no previous revision to roll back to: revisions %s were rolled back from before",
			strings.Join(skipped, ", ")))
	}
	return nil, action.Terminal(fmt.Errorf(
		"no previous revision to roll back to: %d replicaset(s) kept, revisionHistoryLimit %s",
		len(owned), limit))
}

// ownedReplicaSets lists the ReplicaSets d controls, newest revision first.
func (e *Executor) ownedReplicaSets(
	ctx context.Context,
	d *appsv1.Deployment,
) ([]appsv1.ReplicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, action.Terminal(fmt.Errorf("deployment has an invalid selector: %w", err))
	}
	list, err := e.client.AppsV1().ReplicaSets(d.Namespace).List(ctx,
		metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, classify(err, "list", "replicasets.apps", d.Namespace)
	}
	owned := slices.DeleteFunc(list.Items, func(rs appsv1.ReplicaSet) bool {
		ref := metav1.GetControllerOf(&rs)
		return ref == nil || ref.UID != d.UID
	})
	slices.SortFunc(owned, func(a, b appsv1.ReplicaSet) int {
		return revisionNumber(&b) - revisionNumber(&a)
	})
	return owned, nil
}

// currentReplicaSet is the owned ReplicaSet that runs d's pod template now,
// or nil when the controller has not made it yet.
func currentReplicaSet(d *appsv1.Deployment, owned []appsv1.ReplicaSet) *appsv1.ReplicaSet {
	for i := range owned {
		if sameTemplate(owned[i].Spec.Template, d.Spec.Template) {
			return &owned[i]
		}
	}
	return nil
}

// sameTemplate compares pod templates the way the Deployment controller
// does, ignoring the pod-template-hash label it adds to ReplicaSets.
func sameTemplate(a, b corev1.PodTemplateSpec) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

func restoredTemplate(rs *appsv1.ReplicaSet) corev1.PodTemplateSpec {
	tmpl := *rs.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return tmpl
}

// rollbackAnnotations keeps the controller's own annotations of the
// Deployment and takes every other one from the restored ReplicaSet (such
// as kubernetes.io/change-cause), as kubectl rollout undo does.
func rollbackAnnotations(deployment, rs map[string]string) map[string]string {
	out := map[string]string{}
	for _, k := range controllerAnnotations {
		if v, ok := deployment[k]; ok {
			out[k] = v
		}
	}
	for k, v := range rs {
		if !slices.Contains(controllerAnnotations, k) {
			out[k] = v
		}
	}
	return out
}

func revisionOf(rs *appsv1.ReplicaSet) string { return rs.Annotations[revisionAnnotation] }

func revisionNumber(rs *appsv1.ReplicaSet) int {
	n, err := strconv.Atoi(revisionOf(rs))
	if err != nil {
		return 0
	}
	return n
}

// images lists the containers' images of a pod spec, name=image, sorted.
func images(spec corev1.PodSpec) string {
	m := map[string]string{}
	for _, c := range spec.Containers {
		m[c.Name] = c.Image
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, name+"="+m[name])
	}
	return strings.Join(parts, ",")
}
