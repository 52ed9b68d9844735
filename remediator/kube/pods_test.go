package kube

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/kube/kubetest"
)

// podNames returns the names of the live pods of app, sorted.
func (f *fixture) podNames(app string) []string {
	f.t.Helper()
	var names []string
	for _, p := range f.pods("app=" + app) {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	return names
}

// setRestarts gives every container of a ready pod a restart count, as a
// pod that crashes now and then but keeps passing its probes would have.
func (f *fixture) setRestarts(pod string, n int32) {
	f.t.Helper()
	p, err := f.env.Client.CoreV1().Pods(f.ns).Get(f.ctx(), pod, metav1.GetOptions{})
	require.NoError(f.t, err)
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].RestartCount = n
	}
	_, err = f.env.Client.CoreV1().Pods(f.ns).UpdateStatus(f.ctx(), p, metav1.UpdateOptions{})
	require.NoError(f.t, err)
}

func TestDeletePod(t *testing.T) {
	cases := []struct {
		name string
		// crash sets up the pods of a 3-replica deployment and returns the
		// pods that must be deleted.
		crash   func(f *fixture, pods []string) []string
		params  action.Params
		target  func(f *fixture, pods []string) action.Target
		refused string
		changed bool
	}{
		{
			name: "crash-looping pod deleted, ready ones kept",
			crash: func(f *fixture, pods []string) []string {
				require.NoError(f.t, f.env.CrashLoop(f.ctx(), f.ns, pods[0], 5))
				return pods[:1]
			},
			params:  action.Params{MinReady: 2},
			changed: true,
		},
		{
			name: "restart threshold over ready pods keeps the ready minimum",
			crash: func(f *fixture, pods []string) []string {
				for _, p := range pods {
					f.setRestarts(p, 10)
				}
				return pods[:1]
			},
			params:  action.Params{RestartThreshold: 3, MinReady: 2},
			changed: true,
		},
		{
			name: "refused when every deletion would go under the minimum",
			crash: func(f *fixture, pods []string) []string {
				f.setRestarts(pods[0], 10)
				return nil
			},
			params:  action.Params{RestartThreshold: 3, MinReady: 3},
			refused: "would leave fewer than 3 ready pods",
		},
		{
			name:  "nothing crash-looping",
			crash: func(f *fixture, pods []string) []string { return nil },
		},
		{
			name: "only the pod the alert names",
			crash: func(f *fixture, pods []string) []string {
				require.NoError(f.t, f.env.CrashLoop(f.ctx(), f.ns, pods[0], 5))
				require.NoError(f.t, f.env.CrashLoop(f.ctx(), f.ns, pods[1], 5))
				return pods[1:2]
			},
			target: func(f *fixture, pods []string) action.Target {
				return action.Target{Namespace: f.ns, Pod: pods[1]}
			},
			changed: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.deployment("web", "web:1", 3)
			before := f.podNames("web")
			require.Len(t, before, 3)
			deleted := tc.crash(f, before)
			target := f.target("deployment", "web")
			if tc.target != nil {
				target = tc.target(f, before)
			}

			res, err := f.do(action.Request{
				Action: action.DeletePod, Target: target, Params: tc.params,
			})
			if tc.refused != "" {
				require.Error(t, err)
				require.True(t, action.IsTerminal(err))
				require.Contains(t, err.Error(), tc.refused)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.changed, res.Changed)
				require.Equal(t, strings.Join(deleted, ","), res.Details["deleted"])
			}
			after := f.podNames("web")
			for _, p := range before {
				require.Equal(t, !slices.Contains(deleted, p), slices.Contains(after, p),
					"pod %s", p)
			}
		})
	}
}

func TestWaitForRollout(t *testing.T) {
	f := newFixture(t)
	f.deployment("done", "web:1", 2)
	f.deployment("stuck", "web:1", 2, func(d *appsv1.Deployment) {
		d.Spec.Template.Labels[kubetest.NotReadyLabel] = "true"
		d.Spec.Selector.MatchLabels[kubetest.NotReadyLabel] = "true"
	})
	f.deployment("stalled", "web:1", 1, func(d *appsv1.Deployment) {
		d.Spec.Template.Labels[kubetest.NotReadyLabel] = "true"
		d.Spec.Selector.MatchLabels[kubetest.NotReadyLabel] = "true"
		d.Spec.ProgressDeadlineSeconds = ptr.To[int32](1)
	})

	cases := []struct {
		name     string
		target   string
		timeout  time.Duration
		err      string
		terminal bool
	}{
		{name: "rolled out", target: "done", timeout: 5 * time.Second},
		{
			name: "times out while replicas are unavailable", target: "stuck",
			timeout: time.Second, err: "rollout not finished: ",
		},
		{
			name: "progress deadline exceeded fails at once", target: "stalled",
			timeout: 20 * time.Second, err: "rollout exceeded its progress deadline",
			terminal: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := f.do(action.Request{
				Action: action.WaitForRollout,
				Target: f.target("deployment", tc.target),
				Params: action.Params{Timeout: tc.timeout},
			})
			if tc.err == "" {
				require.NoError(t, err)
				require.Equal(t, "rolled out: 2 replicas updated and available", res.Summary)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.err)
			require.Equal(t, tc.terminal, action.IsTerminal(err))
			require.Less(t, time.Since(start), tc.timeout+5*time.Second)
		})
	}
}

func TestResolveTarget(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 1)
	f.statefulSet("db", appsv1.RollingUpdateStatefulSetStrategyType)
	bare := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bare", Namespace: f.ns},
		Spec:       podTemplate(nil, "x:1").Spec,
	}
	_, err := f.env.Client.CoreV1().Pods(f.ns).Create(f.ctx(), bare, metav1.CreateOptions{})
	require.NoError(t, err)
	webPod := f.podNames("web")[0]

	cases := []struct {
		name   string
		target action.Target
		want   action.Target
		err    string
	}{
		{
			name:   "kind from labels, any case",
			target: action.Target{Kind: "Deploy", Namespace: f.ns, Name: "web"},
			want:   action.Target{Kind: "Deployment", Namespace: f.ns, Name: "web"},
		},
		{
			name:   "deployment pod through its replicaset",
			target: action.Target{Namespace: f.ns, Pod: webPod},
			want:   action.Target{Kind: "Deployment", Namespace: f.ns, Name: "web", Pod: webPod},
		},
		{
			name:   "statefulset pod",
			target: action.Target{Kind: "pod", Namespace: f.ns, Name: "db-1"},
			want:   action.Target{Kind: "StatefulSet", Namespace: f.ns, Name: "db", Pod: "db-1"},
		},
		{
			name:   "pod without owner",
			target: action.Target{Namespace: f.ns, Pod: "bare"},
			err:    "has no Deployment or StatefulSet owner",
		},
		{
			name:   "missing pod",
			target: action.Target{Namespace: f.ns, Pod: "gone"},
			err:    `pods "gone" not found`,
		},
		{
			name:   "unsupported kind",
			target: action.Target{Kind: "daemonset", Namespace: f.ns, Name: "x"},
			err:    `unsupported kind "daemonset"`,
		},
		{
			name:   "invalid name from a label",
			target: action.Target{Kind: "deployment", Namespace: f.ns, Name: "Web/../x"},
			err:    `invalid name "Web/../x"`,
		},
		{
			name:   "invalid namespace",
			target: action.Target{Kind: "deployment", Namespace: "", Name: "web"},
			err:    `invalid namespace ""`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.exec.Resolve(f.ctx(), tc.target)
			if tc.err != "" {
				require.Error(t, err)
				require.True(t, action.IsTerminal(err))
				require.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	t.Run("mark good records nothing for a statefulset", func(t *testing.T) {
		revision, err := f.exec.MarkGood(f.ctx(), action.Target{Namespace: f.ns, Pod: "db-0"})
		require.NoError(t, err)
		require.Empty(t, revision)
	})
}
