package state

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Admission refusal reasons.
const (
	ReasonCooldown = "cooldown"
	ReasonBudget   = "budget"
)

// runLog is the run history of one target: the start of each run in Unix
// microseconds on the caller's clock, oldest first, and when the record may
// be swept, in Unix microseconds on the store's clock. Every store keeps
// times in microseconds so that all of them, Redis included, decide alike.
type runLog struct {
	Runs    []int64 `json:"runs"`
	Expires int64   `json:"expires"`
}

// runSlack is how much longer than its budget needs a run record is kept,
// for clocks of caller and store that disagree a little.
const runSlack = time.Second

// RunHistory is how long Admit remembers each admitted run at least, or
// longer when the budget's Cooldown or Window is longer. One target may be
// admitted under budgets of different lengths, for example by two playbooks;
// keeping every run this long lets each of them see the runs it counts, as
// long as no Window or Cooldown exceeds RunHistory.
const RunHistory = 24 * time.Hour

// admit decides whether a run at now fits budget b given the history in log,
// and returns the history to keep. Runs older than the longest of RunHistory,
// Cooldown and Window are dropped. A run that starts exactly Cooldown after
// the last one is allowed; a run exactly Window old no longer counts against
// the budget.
//
// The decision uses only the caller's now. The store's clock, storeNow, only
// sets when an admitted run's record may be swept: that same length of time
// plus runSlack after it was recorded, as Redis's PEXPIRE does.
func admit(log runLog, now, storeNow time.Time, b Budget) (Admission, runLog) {
	at := now.UnixMicro()
	cooldown := b.Cooldown.Microseconds()
	window := b.Window.Microseconds()
	keep := historyFor(b)

	runs := slices.DeleteFunc(slices.Clone(log.Runs), func(r int64) bool {
		return r <= at-keep
	})
	kept := runLog{Runs: runs, Expires: log.Expires}
	if cooldown > 0 && len(runs) > 0 {
		if last := runs[len(runs)-1]; at < last+cooldown {
			return refuse(ReasonCooldown, last+cooldown), kept
		}
	}
	if b.MaxRuns > 0 {
		first, _ := slices.BinarySearch(runs, at-window+1)
		inWindow := runs[first:]
		if len(inWindow) >= b.MaxRuns {
			// The budget frees up when enough of the runs in the window
			// have left it to bring the count under MaxRuns.
			until := inWindow[len(inWindow)-b.MaxRuns] + window
			return refuse(ReasonBudget, until), kept
		}
	}
	i, _ := slices.BinarySearch(runs, at)
	kept.Runs = slices.Insert(runs, i, at)
	kept.Expires = storeNow.UnixMicro() + keep + runSlack.Microseconds()
	return Admission{Allowed: true}, kept
}

// historyFor returns, in microseconds, how long runs are kept under b.
func historyFor(b Budget) int64 {
	return max(b.Cooldown, b.Window, RunHistory).Microseconds()
}

func refuse(reason string, until int64) Admission {
	return Admission{Reason: reason, Until: time.UnixMicro(until).UTC()}
}

// checkBudget rejects a budget that cannot be applied.
func checkBudget(target string, b Budget) error {
	switch {
	case target == "":
		return errors.New("admit: empty target")
	case b.Cooldown < 0 || b.Window < 0 || b.MaxRuns < 0:
		return fmt.Errorf("admit %s: negative budget %+v", target, b)
	case b.MaxRuns > 0 && b.Window <= 0:
		return fmt.Errorf("admit %s: budget of %d runs needs a window", target, b.MaxRuns)
	}
	return nil
}

// checkTTL rejects an empty key or a ttl that would expire at once.
func checkTTL(op, key string, ttl time.Duration) error {
	switch {
	case key == "":
		return fmt.Errorf("%s: empty key", op)
	case ttl < time.Millisecond:
		return fmt.Errorf("%s %s: ttl %s is under a millisecond", op, key, ttl)
	}
	return nil
}

// checkLock rejects an empty key or owner, or a ttl under a millisecond.
func checkLock(key, owner string, ttl time.Duration) error {
	if owner == "" {
		return fmt.Errorf("lock %s: empty owner", key)
	}
	return checkTTL("lock", key, ttl)
}

// checkKV rejects an empty bucket or key.
func checkKV(op, bucket, key string) error {
	if bucket == "" || key == "" {
		return fmt.Errorf("%s %q/%q: empty bucket or key", op, bucket, key)
	}
	return nil
}

// encodeIncident checks that inc has an ID and encodes it as every store
// keeps it, in JSON.
func encodeIncident(inc Incident) ([]byte, error) {
	if inc.ID == "" {
		return nil, errors.New("save incident: empty id")
	}
	data, err := json.Marshal(inc)
	if err != nil {
		return nil, fmt.Errorf("save incident %s: %w", inc.ID, err)
	}
	return data, nil
}

// sortNewestFirst orders incidents by when they opened, newest first, and
// by ID among those opened at the same time so that the order is stable.
func sortNewestFirst(incs []Incident) {
	slices.SortFunc(incs, func(a, b Incident) int {
		if c := b.OpenedAt.Compare(a.OpenedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
}
