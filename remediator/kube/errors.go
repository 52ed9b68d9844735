package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/companion/remediator/remediator/action"
)

// maxConflicts bounds how often one action re-reads and retries after the API
// server answered 409 Conflict because somebody else wrote in between.
const maxConflicts = 5

// conflictPause is the longest pause after the first conflict, growing with
// each further one.
const conflictPause = 20 * time.Millisecond

// Pauses between retries of transient failures: doubled each time, with up
// to half of it added at random, never more than maxBackoff.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// classify turns an API error into the error the executor returns. What can
// never succeed by retrying is marked terminal: a forbidden request names
// the verb, resource and namespace that RBAC has to allow; a missing object,
// a rejected object and bad credentials are terminal too. Conflicts, timeouts,
// throttling and server errors are returned as they are, for retry to judge.
func classify(err error, verb, resource, namespace string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return action.Terminal(fmt.Errorf(
			"forbidden: RBAC does not allow the remediator to %s %s in namespace %s: %w",
			verb, resource, namespace, err))
	case apierrors.IsUnauthorized(err):
		return action.Terminal(fmt.Errorf(
			"unauthorized: the API server refused the remediator's credentials: %w", err))
	case apierrors.IsNotFound(err),
		apierrors.IsInvalid(err),
		apierrors.IsBadRequest(err),
		apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err),
		apierrors.IsUnsupportedMediaType(err),
		apierrors.IsRequestEntityTooLargeError(err):
		return action.Terminal(err)
	}
	return err
}

// transient reports whether err may go away by itself: the API server or the
// network timed out, throttled the client, or failed on its side.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch {
	case apierrors.IsServerTimeout(err),
		apierrors.IsTimeout(err),
		apierrors.IsTooManyRequests(err),
		apierrors.IsInternalError(err),
		apierrors.IsServiceUnavailable(err),
		apierrors.IsUnexpectedServerError(err):
		return true
	case utilnet.IsConnectionRefused(err),
		utilnet.IsConnectionReset(err),
		utilnet.IsProbableEOF(err):
		return true
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code >= 500 {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// retry runs attempt until it succeeds, fails terminally, or runs out of
// time. attempt must read what it changes each time it runs, so that after
// a conflict it decides again on what the other writer left and keeps it.
// Conflicts re-run attempt at once, at most maxConflicts times; transient
// failures re-run it after a growing pause while the context's deadline
// leaves room for one. Any other error ends the loop as it is.
func retry(
	ctx context.Context,
	log *slog.Logger,
	what string,
	attempt func(context.Context) (action.Result, error),
) (action.Result, error) {
	conflicts, failures := 0, 0
	for {
		res, err := attempt(ctx)
		switch {
		case err == nil, action.IsTerminal(err):
			return res, err
		case apierrors.IsConflict(err):
			conflicts++
			if conflicts > maxConflicts {
				return res, fmt.Errorf("still conflicting after %d retries: %w", maxConflicts, err)
			}
			log.Debug("kube write conflicted, reading again",
				"what", what, "conflicts", conflicts, "err", err)
			// Controllers write status often; a short random pause keeps the
			// next attempt from meeting the same burst of writes.
			if err := sleep(ctx, rand.N(conflictPause*time.Duration(conflicts))); err != nil {
				return res, fmt.Errorf("conflicting when the deadline came: %w", err)
			}
		case transient(err):
			failures++
			pause := backoff(failures)
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
				return res, fmt.Errorf("gave up after %d attempts, deadline near: %w", failures, err)
			}
			log.Debug("kube request failed, retrying",
				"what", what, "attempt", failures, "pause", pause, "err", err)
			if err := sleep(ctx, pause); err != nil {
				return res, fmt.Errorf("gave up after %d attempts: %w", failures, err)
			}
		default:
			return res, err
		}
	}
}

func backoff(failures int) time.Duration {
	d := firstBackoff << min(failures-1, 5)
	d += rand.N(d/2 + 1)
	return min(d, maxBackoff)
}

// sleep waits for d or until ctx ends, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// outOfTime reports whether err means the step's deadline has come: the
// context ended, or client-go's rate limiter refused to wait past the
// deadline (its error wraps no context error, only says so).
func outOfTime(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "would exceed context deadline")
}
