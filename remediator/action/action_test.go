package action

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTerminal(t *testing.T) {
	base := errors.New("deployment is paused")
	require.True(t, IsTerminal(Terminal(base)))
	require.True(t, IsTerminal(fmt.Errorf("restart deployment shop/web: %w", Terminal(base))))
	require.ErrorIs(t, Terminal(base), base)
	require.False(t, IsTerminal(base))
	require.NoError(t, Terminal(nil))
}

func TestPlanOnlyRecordsAndChangesNothing(t *testing.T) {
	p := &PlanOnly{}
	req := Request{Action: Restart, Target: Target{Kind: KindDeployment, Namespace: "shop", Name: "web"}}
	res, err := p.Execute(context.Background(), req)
	require.NoError(t, err)
	require.True(t, res.Planned)
	require.False(t, res.Changed)
	require.Equal(t, "would restart Deployment shop/web", res.Summary)
	require.Equal(t, []Request{req}, p.Planned())

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Execute(ctx, req)
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, p.Planned(), 1)
}

func TestTargetNames(t *testing.T) {
	pod := Target{Namespace: "shop", Pod: "web-7d9f-abcde"}
	require.Equal(t, "pod-owner shop/web-7d9f-abcde", pod.String())
	require.Equal(t, "/shop/pod:web-7d9f-abcde", pod.Key())
	dep := Target{Kind: KindDeployment, Namespace: "shop", Name: "web"}
	require.Equal(t, "Deployment/shop/web", dep.Key())
}
