package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestQueue(t *testing.T) {
	q := newQueue(1)
	release := make(chan struct{})
	started := make(chan struct{})
	var order []int

	require.True(t, q.push(func(context.Context) {
		close(started)
		<-release
		order = append(order, 1)
	}))
	<-started
	require.True(t, q.push(func(context.Context) { order = append(order, 2) }))
	require.False(t, q.push(func(context.Context) {}), "a full queue refuses, never waits")

	close(release)
	q.close(time.Second)
	require.Equal(t, []int{1, 2}, order, "jobs run in order and the queued one still runs")
	require.False(t, q.push(func(context.Context) {}), "a closed queue refuses")
}

func TestQueueCloseAbandonsStuckJobs(t *testing.T) {
	q := newQueue(4)
	cancelled := make(chan error, 1)
	require.True(t, q.push(func(ctx context.Context) {
		<-ctx.Done()
		cancelled <- ctx.Err()
	}))
	start := time.Now()
	q.close(50 * time.Millisecond)
	require.ErrorIs(t, <-cancelled, context.Canceled)
	require.Less(t, time.Since(start), time.Second)
}
