package notifier

import "time"

// Clock tells the time. Escalation timers read the time only through a
// Clock, so tests can move it forward by hand.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }
