package state

import (
	"log/slog"
	"time"
)

// Option tunes a store made by NewMemory or OpenBolt. Options that do not
// apply to a store are ignored by it.
type Option func(*options)

type options struct {
	clock         func() time.Time
	sweepInterval time.Duration
	openTimeout   time.Duration
	logger        *slog.Logger
}

func buildOptions(opts []Option) options {
	o := options{
		clock:         time.Now,
		sweepInterval: time.Minute,
		openTimeout:   2 * time.Second,
		logger:        slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithClock sets the clock that claim and lock expiry are measured by. Tests
// pass a clock they can move; the default is time.Now. Admit does not use it:
// its caller passes the time.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.clock = now
		}
	}
}

// WithSweepInterval sets how often expired claims, locks and run records are
// removed so that the store does not grow without bound. For the bolt store
// it is the period of a background sweep; zero or less turns that off and
// leaves only the sweep done on access. For the memory store it is measured
// on the store's clock. The default is one minute.
func WithSweepInterval(d time.Duration) Option {
	return func(o *options) { o.sweepInterval = d }
}

// WithOpenTimeout sets how long OpenBolt waits for the file lock that another
// process may hold before it gives up. The default is two seconds.
func WithOpenTimeout(d time.Duration) Option {
	return func(o *options) { o.openTimeout = d }
}

// WithLogger sets where background failures, such as a failed sweep, are
// logged. The default discards them.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}
