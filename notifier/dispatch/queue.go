package dispatch

import (
	"context"
	"sync"
	"time"
)

// queue runs jobs one after another on a goroutine of its own, so that a
// slow integration delays only itself and keeps its events in order.
type queue struct {
	mu     sync.Mutex
	closed bool
	jobs   chan func(context.Context)
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

func newQueue(size int) *queue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &queue{
		jobs: make(chan func(context.Context), size), ctx: ctx, cancel: cancel,
		done: make(chan struct{}),
	}
	go q.work()
	return q
}

func (q *queue) work() {
	defer close(q.done)
	for job := range q.jobs {
		if q.ctx.Err() != nil {
			continue
		}
		job(q.ctx)
	}
}

// push queues job; it reports false when the queue is full or closed.
func (q *queue) push(job func(context.Context)) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	select {
	case q.jobs <- job:
		return true
	default:
		return false
	}
}

// close stops taking jobs, lets the queued ones run for up to grace, then
// cancels the rest and waits for the worker.
func (q *queue) close(grace time.Duration) {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.jobs)
	}
	q.mu.Unlock()
	select {
	case <-q.done:
	case <-time.After(grace):
		q.cancel()
		<-q.done
	}
	q.cancel()
}
