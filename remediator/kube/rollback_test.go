package kube

import (
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"

	"github.com/companion/remediator/remediator/action"
)

func (f *fixture) rollback(name string) (action.Result, error) {
	f.t.Helper()
	return f.do(action.Request{Action: action.Rollback, Target: f.target("deployment", name)})
}

func (f *fixture) image(name string) string {
	f.t.Helper()
	return f.getDeployment(name).Spec.Template.Spec.Containers[0].Image
}

func TestRollbackRestoresPreviousTemplate(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 2)
	f.setImage("web", "web:2")

	res, err := f.rollback("web")
	require.NoError(t, err)
	require.True(t, res.Changed)
	require.Equal(t, "2", res.Details["from_revision"])
	require.Equal(t, "1", res.Details["to_revision"])
	require.Equal(t, "app=web:1", res.Details["to_images"])

	d := f.getDeployment("web")
	require.Equal(t, "web:1", d.Spec.Template.Spec.Containers[0].Image)
	require.NotContains(t, d.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	f.waitRolledOut("web")
	owned := f.replicaSets("web")
	require.Len(t, owned, 2, "the old replicaset is reused, not copied")
	require.Equal(t, "3", revisionOf(&owned[0]), "the restored template becomes revision 3")
	require.Equal(t, "web:1", owned[0].Spec.Template.Spec.Containers[0].Image)
}

func TestRollbackNeverFlipsBack(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 1)
	f.setImage("web", "web:2")
	f.setImage("web", "web:3")

	_, err := f.rollback("web")
	require.NoError(t, err)
	require.Equal(t, "web:2", f.image("web"))
	f.waitRolledOut("web")

	// kubectl rollout undo would go back to web:3 now, the revision just left.
	res, err := f.rollback("web")
	require.NoError(t, err)
	require.Equal(t, "web:1", f.image("web"))
	require.Equal(t, "1", res.Details["to_revision"])
	f.waitRolledOut("web")

	_, err = f.rollback("web")
	require.Error(t, err)
	require.True(t, action.IsTerminal(err))
	require.Contains(t, err.Error(), "no previous revision")
	require.Equal(t, "web:1", f.image("web"), "a refused rollback changes nothing")
}

func TestRollbackGoesToKnownGood(t *testing.T) {
	f := newFixture(t)
	f.deployment("web", "web:1", 1)
	revision, err := f.exec.MarkGood(f.ctx(), f.target("deployment", "web"))
	require.NoError(t, err)
	require.Equal(t, "1", revision)
	f.setImage("web", "web:2")
	f.setImage("web", "web:3")

	res, err := f.rollback("web")
	require.NoError(t, err)
	require.Equal(t, "web:1", f.image("web"), "skips web:2, never known good")
	require.Equal(t, "true", res.Details["known_good_used"])
}

func TestRollbackWithoutPreviousRevisionChangesNothing(t *testing.T) {
	cases := []struct {
		name  string
		setup func(f *fixture)
	}{
		{
			name:  "one revision",
			setup: func(f *fixture) { f.deployment("web", "web:1", 1) },
		},
		{
			name: "history limit 0",
			setup: func(f *fixture) {
				f.deployment("web", "web:1", 1, func(d *appsv1.Deployment) {
					d.Spec.RevisionHistoryLimit = ptr.To[int32](0)
				})
				f.setImage("web", "web:2")
				require.Eventually(t, func() bool { return len(f.replicaSets("web")) == 1 },
					waitLong, waitTick, "the controller never pruned the old replicaset")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(f)
			before := f.getDeployment("web")

			_, err := f.rollback("web")
			require.Error(t, err)
			require.True(t, action.IsTerminal(err))
			require.Contains(t, err.Error(), "no previous revision")

			after := f.getDeployment("web")
			require.Equal(t, before.Generation, after.Generation, "the spec was not written")
			h, err := f.exec.revs.load(f.ctx(), f.ns, "web")
			require.NoError(t, err)
			require.Empty(t, h.Bad, "nothing was recorded")
		})
	}
}

func TestRollbackStatefulSetRefused(t *testing.T) {
	f := newFixture(t)
	_, err := f.do(action.Request{Action: action.Rollback, Target: f.target("sts", "db")})
	require.Error(t, err)
	require.True(t, action.IsTerminal(err))
	require.Contains(t, err.Error(), "rollback supports deployments only")
}
