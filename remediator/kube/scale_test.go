package kube

import (
	"testing"

	"github.com/stretchr/testify/require"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/companion/remediator/remediator/action"
)

func (f *fixture) replicas(name string) int32 {
	f.t.Helper()
	return *f.getDeployment(name).Spec.Replicas
}

func TestScale(t *testing.T) {
	cases := []struct {
		name    string
		params  action.Params
		want    int32
		changed bool
		refused string
	}{
		{name: "absolute", params: action.Params{Replicas: ptr.To[int32](4)}, want: 4, changed: true},
		{name: "relative up", params: action.Params{Delta: ptr.To[int32](2)}, want: 4, changed: true},
		{name: "relative down", params: action.Params{Delta: ptr.To[int32](-1)}, want: 1, changed: true},
		{
			name:   "clamped to max",
			params: action.Params{Delta: ptr.To[int32](10), Max: 5},
			want:   5, changed: true,
		},
		{
			name:   "clamped to min",
			params: action.Params{Delta: ptr.To[int32](-10), Min: 1},
			want:   1, changed: true,
		},
		{name: "unchanged", params: action.Params{Replicas: ptr.To[int32](2)}, want: 2},
		{
			name:    "zero refused",
			params:  action.Params{Delta: ptr.To[int32](-5)},
			want:    2,
			refused: "refused: scaling to 0 replicas (from 2) needs the playbook to allow zero",
		},
		{
			name:   "zero allowed",
			params: action.Params{Replicas: ptr.To[int32](0), AllowZero: true},
			want:   0, changed: true,
		},
		{
			name:    "neither replicas nor delta",
			params:  action.Params{},
			want:    2,
			refused: "exactly one of replicas (absolute) or delta (relative)",
		},
		{
			name:    "inverted bounds",
			params:  action.Params{Replicas: ptr.To[int32](3), Min: 4, Max: 2},
			want:    2,
			refused: "min 4 is above max 2",
		},
	}
	f := newFixture(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := "web" + string(rune('a'+i))
			f.deployment(name, "web:1", 2)
			res, err := f.do(action.Request{
				Action: action.Scale, Target: f.target("deployment", name), Params: tc.params,
			})
			if tc.refused != "" {
				require.Error(t, err)
				require.True(t, action.IsTerminal(err))
				require.Contains(t, err.Error(), tc.refused)
			} else {
				require.NoError(t, err)
				require.Equal(t, tc.changed, res.Changed)
			}
			require.Equal(t, tc.want, f.replicas(name))
		})
	}
}

func TestScaleStatefulSet(t *testing.T) {
	f := newFixture(t)
	f.statefulSet("db", "RollingUpdate")
	res, err := f.do(action.Request{
		Action: action.Scale, Target: f.target("statefulset", "db"),
		Params: action.Params{Delta: ptr.To[int32](1)},
	})
	require.NoError(t, err)
	require.Equal(t, "scaled from 2 to 3 replicas", res.Summary)
	sts, err := f.env.Client.AppsV1().StatefulSets(f.ns).Get(f.ctx(), "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(3), *sts.Spec.Replicas)
}

func TestScaleWithAutoscaler(t *testing.T) {
	cases := []struct {
		name    string
		params  action.Params
		refused string
		want    int32
		hpaMin  int32
	}{
		{
			name:    "refused with the autoscaler's bounds",
			params:  action.Params{Replicas: ptr.To[int32](4)},
			refused: "HorizontalPodAutoscaler web scales this workload (minReplicas 2, maxReplicas 6)",
			want:    2, hpaMin: 2,
		},
		{
			name:   "minReplicas raised when the playbook opts in",
			params: action.Params{Replicas: ptr.To[int32](4), RaiseHPAMin: true},
			want:   4, hpaMin: 4,
		},
		{
			name:    "above maxReplicas refused even when opted in",
			params:  action.Params{Replicas: ptr.To[int32](8), RaiseHPAMin: true},
			refused: "8 replicas is above its maxReplicas",
			want:    2, hpaMin: 2,
		},
		{
			name:    "below minReplicas refused",
			params:  action.Params{Replicas: ptr.To[int32](1), RaiseHPAMin: true},
			refused: "1 replicas is below its minReplicas",
			want:    2, hpaMin: 2,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.deployment("web", "web:1", 2)
			hpas := f.env.Client.AutoscalingV2().HorizontalPodAutoscalers(f.ns)
			_, err := hpas.Create(f.ctx(), &autoscalingv2.HorizontalPodAutoscaler{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: f.ns},
				Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
					ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{
						APIVersion: "apps/v1", Kind: "Deployment", Name: "web",
					},
					MinReplicas: ptr.To[int32](2),
					MaxReplicas: 6,
				},
			}, metav1.CreateOptions{})
			require.NoError(t, err)

			_, err = f.do(action.Request{
				Action: action.Scale, Target: f.target("deployment", "web"), Params: tc.params,
			})
			if tc.refused != "" {
				require.Error(t, err)
				require.True(t, action.IsTerminal(err))
				require.Contains(t, err.Error(), tc.refused)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.want, f.replicas("web"))
			hpa, err := hpas.Get(f.ctx(), "web", metav1.GetOptions{})
			require.NoError(t, err)
			require.Equal(t, tc.hpaMin, *hpa.Spec.MinReplicas)
		})
	}
}
