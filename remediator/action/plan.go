package action

import (
	"context"
	"fmt"
	"sync"
)

// PlanOnly is the executor used when no cluster is configured. It changes
// nothing and records each request, so simulate and plan-only serve can show
// exactly what would have been done.
type PlanOnly struct {
	mu      sync.Mutex
	planned []Request
}

// Name implements Executor.
func (p *PlanOnly) Name() string { return "plan-only" }

// Execute records req and returns a planned result.
func (p *PlanOnly) Execute(ctx context.Context, req Request) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	p.mu.Lock()
	p.planned = append(p.planned, req)
	p.mu.Unlock()
	return Result{
		Planned: true,
		DryRun:  req.DryRun,
		Summary: fmt.Sprintf("would %s %s", req.Action, req.Target),
	}, nil
}

// Planned returns a copy of every request recorded so far.
func (p *PlanOnly) Planned() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.planned...)
}
