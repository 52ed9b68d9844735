package kube

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/companion/remediator/remediator/action"
)

func TestRestartDeployment(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 2)
	require.Len(t, f.replicaSets("web"), 1)

	res, err := f.do(action.Request{Action: action.Restart, Target: f.target("deployment", "web")})
	require.NoError(t, err)
	require.True(t, res.Changed)
	require.Equal(t, "1", res.Details["revision_before"])

	d := f.getDeployment("web")
	require.Equal(t, res.Details["restarted_at"], d.Spec.Template.Annotations[RestartedAtAnnotation])
	f.waitRolledOut("web")
	owned := f.replicaSets("web")
	require.Len(t, owned, 2, "a restart rolls out a new replicaset")
	require.Equal(t, "2", revisionOf(&owned[0]))
	require.Equal(t, res.Details["restarted_at"],
		owned[0].Spec.Template.Annotations[RestartedAtAnnotation])

	res, err = f.do(action.Request{
		Action: action.WaitForRollout, Target: f.target("deployment", "web"),
	})
	require.NoError(t, err)
	require.Equal(t, "true", res.Details["rolled_out"])
}

func TestRestartTwiceInOneSecondIsInProgress(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 1)
	fixed := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	f.exec.now = func() time.Time { return fixed }

	first, err := f.do(action.Request{Action: action.Restart, Target: f.target("deployment", "web")})
	require.NoError(t, err)
	require.True(t, first.Changed)
	generation := f.getDeployment("web").Generation

	f.exec.now = func() time.Time { return fixed.Add(900 * time.Millisecond) }
	second, err := f.do(action.Request{Action: action.Restart, Target: f.target("deployment", "web")})
	require.NoError(t, err, "a second restart in the same second is not a failure")
	require.False(t, second.Changed)
	require.Contains(t, second.Summary, "already in progress")
	require.Equal(t, generation, f.getDeployment("web").Generation, "nothing was written")
}

func TestRestartPausedDeploymentRefused(t *testing.T) {
	f := newFixture(t)
	before := f.deployment("web", "web:1", 1, func(d *appsv1.Deployment) { d.Spec.Paused = true })

	_, err := f.do(action.Request{Action: action.Restart, Target: f.target("deployment", "web")})
	require.Error(t, err)
	require.True(t, action.IsTerminal(err))
	require.Contains(t, err.Error(), "restart deployment "+f.ns+"/web: deployment is paused")

	after := f.getDeployment("web")
	require.True(t, after.Spec.Paused, "never resumed behind the operator's back")
	require.Equal(t, before.Generation, after.Generation, "the spec was not written")
	require.NotContains(t, after.Spec.Template.Annotations, RestartedAtAnnotation)
}

// statefulSet creates a StatefulSet of two pods with the given update
// strategy and waits until both are ready.
func (f *fixture) statefulSet(name string, strategy appsv1.StatefulSetUpdateStrategyType) {
	f.t.Helper()
	labels := map[string]string{"app": name}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:       ptr.To[int32](2),
			ServiceName:    name,
			Selector:       &metav1.LabelSelector{MatchLabels: labels},
			Template:       podTemplate(labels, "db:1"),
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: strategy},
		},
	}
	_, err := f.env.Client.AppsV1().StatefulSets(f.ns).Create(f.ctx(), sts, metav1.CreateOptions{})
	require.NoError(f.t, err)
	require.Eventually(f.t, func() bool {
		got, err := f.env.Client.AppsV1().StatefulSets(f.ns).Get(f.ctx(), name, metav1.GetOptions{})
		return err == nil && got.Status.ReadyReplicas == 2
	}, waitLong, waitTick, "statefulset %s never got 2 ready pods", name)
}

func podUIDs(pods []corev1.Pod) map[string]types.UID {
	m := map[string]types.UID{}
	for _, p := range pods {
		m[p.Name] = p.UID
	}
	return m
}

func TestRestartStatefulSet(t *testing.T) {
	f := newFixture(t)

	t.Run("rolling update rolls out", func(t *testing.T) {
		f.statefulSet("rolling", appsv1.RollingUpdateStatefulSetStrategyType)
		before := podUIDs(f.pods("app=rolling"))
		res, err := f.do(action.Request{Action: action.Restart, Target: f.target("sts", "rolling")})
		require.NoError(t, err)
		require.True(t, res.Changed)
		_, err = f.do(action.Request{Action: action.WaitForRollout,
			Target: f.target("statefulset", "rolling")})
		require.NoError(t, err)
		for name, uid := range podUIDs(f.pods("app=rolling")) {
			require.NotEqual(t, before[name], uid, "pod %s was not replaced", name)
		}
	})

	t.Run("on delete is reported, no pod restarted", func(t *testing.T) {
		f.statefulSet("ondelete", appsv1.OnDeleteStatefulSetStrategyType)
		before := podUIDs(f.pods("app=ondelete"))
		res, err := f.do(action.Request{Action: action.Restart, Target: f.target("sts", "ondelete")})
		require.NoError(t, err)
		require.True(t, res.Changed)
		require.Contains(t, res.Summary, "template changed, no pod restarted")
		require.Equal(t, "0", res.Details["pods_restarted"])
		require.Equal(t, before, podUIDs(f.pods("app=ondelete")))
	})

	t.Run("on delete with pod deletion allowed restarts pods one at a time", func(t *testing.T) {
		before := podUIDs(f.pods("app=ondelete"))
		// A later stamp than the restart above, which may share its second.
		f.exec.now = func() time.Time { return time.Now().Add(time.Minute) }
		res, err := f.do(action.Request{
			Action: action.Restart,
			Target: f.target("sts", "ondelete"),
			Params: action.Params{AllowPodDeletion: true},
		})
		require.NoError(t, err)
		require.Equal(t, "2", res.Details["pods_restarted"])
		require.Equal(t, "ondelete-1,ondelete-0", res.Details["pods"], "highest ordinal first")
		after := podUIDs(f.pods("app=ondelete"))
		require.Len(t, after, 2)
		for name, uid := range after {
			require.NotEqual(t, before[name], uid, "pod %s was not replaced", name)
		}
	})
}
