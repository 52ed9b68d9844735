package remediator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/engine"
	"github.com/companion/remediator/remediator/state"
)

// SimulateOptions tune Simulate.
type SimulateOptions struct {
	// JSON prints one JSON document per payload instead of text.
	JSON bool
	// Now fixes the clock, so cooldowns across payloads are repeatable.
	Now func() time.Time
}

// Simulate shows what the remediator would do with each payload file, in
// order, using the configuration's playbooks and guards with a fresh
// in-memory store and the plan-only executor: the same engine code as
// serve, with no cluster and no server. Guards carry over from one payload
// to the next, so a repeated payload shows its cooldown.
func Simulate(ctx context.Context, w io.Writer, configPath string, payloads []string,
	so SimulateOptions,
) error {
	cfg, rules, err := loadAll(configPath)
	if err != nil {
		return err
	}
	eo := engineOptions(cfg, Options{Now: so.Now})
	eo.Workers = 0
	eo.Query = nil
	store := state.NewMemory()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng := engine.New(quiet, store, &action.PlanOnly{}, &notifier.Log{},
		prometheus.NewRegistry(), rules, eo)

	for _, p := range payloads {
		if err := simulateOne(ctx, w, eng, store, p, so.JSON); err != nil {
			return err
		}
	}
	return nil
}

type simulated struct {
	Payload         string            `json:"payload"`
	TruncatedAlerts uint64            `json:"truncatedAlerts"`
	Decisions       []engine.Decision `json:"decisions"`
	Runs            []state.Run       `json:"runs"`
}

func simulateOne(ctx context.Context, w io.Writer, eng *engine.Engine, store state.Store,
	path string, asJSON bool,
) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open payload: %w", err)
	}
	defer f.Close()
	msg, err := engine.Decode(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sum, err := eng.Handle(ctx, msg)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	eng.RunPending(ctx)

	out := simulated{Payload: path, TruncatedAlerts: msg.TruncatedAlerts, Decisions: sum.Decisions}
	for _, d := range sum.Decisions {
		if d.Outcome != engine.OutcomeMatched {
			continue
		}
		inc, _, err := store.Incident(ctx, d.Incident)
		if err != nil {
			return err
		}
		for _, r := range inc.Runs {
			if r.Playbook == d.Playbook {
				out.Runs = append(out.Runs, r)
			}
		}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printSimulated(w, eng, out, msg)
	return nil
}

func printSimulated(w io.Writer, eng *engine.Engine, s simulated, msg *engine.Message) {
	fmt.Fprintf(w, "payload %s: %d alerts, group status %s", s.Payload, len(msg.Alerts), msg.Status)
	if s.TruncatedAlerts > 0 {
		fmt.Fprintf(w, ", %d TRUNCATED by Alertmanager (not seen, not resolved)", s.TruncatedAlerts)
	}
	fmt.Fprintln(w)
	for _, d := range s.Decisions {
		fmt.Fprintf(w, "  alert %s (%s, fingerprint %s)\n", d.Alertname, d.Status, d.Fingerprint)
		switch d.Outcome {
		case engine.OutcomeMatched:
			fmt.Fprintf(w, "    playbook %s -> %s\n", d.Playbook, d.Target)
			for _, r := range s.Runs {
				if r.Playbook == d.Playbook {
					printGuards(w, eng, d.Playbook, r)
					printRun(w, r)
				}
			}
		case engine.OutcomeSkipped:
			fmt.Fprintf(w, "    playbook %s: skipped, %s: %s\n", d.Playbook, d.Reason, d.Detail)
		case engine.OutcomeUnmatched:
			fmt.Fprintf(w, "    no playbook matches: nothing to do\n")
		case engine.OutcomeDuplicate:
			fmt.Fprintf(w, "    playbook %s: duplicate of a run already claimed\n", d.Playbook)
		default:
			fmt.Fprintf(w, "    %s %s %s\n", d.Outcome, d.Reason, d.Detail)
		}
	}
}

func printGuards(w io.Writer, eng *engine.Engine, name string, r state.Run) {
	pb, ok := eng.Rules().Playbooks.Get(name)
	if !ok {
		return
	}
	g := pb.Guards
	var parts []string
	if g.Cooldown > 0 {
		parts = append(parts, "cooldown "+g.Cooldown.String())
	}
	if g.MaxRuns > 0 {
		parts = append(parts, fmt.Sprintf("at most %d runs per %s", g.MaxRuns, g.Window))
	}
	if g.DryRun {
		parts = append(parts, "dry run")
	}
	if g.NeedsApproval {
		parts = append(parts, "needs approval")
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	verdict := "passed"
	switch r.Result {
	case engine.ResultSkipped, engine.ResultAwaitingApproval:
		verdict = "refused: " + r.Reason
	}
	fmt.Fprintf(w, "    guards (%s): %s\n", strings.Join(parts, ", "), verdict)
}

func printRun(w io.Writer, r state.Run) {
	fmt.Fprintf(w, "    run %s: %s", r.ID, r.Result)
	if r.Reason != "" {
		fmt.Fprintf(w, " (%s)", r.Reason)
	}
	fmt.Fprintln(w)
	for i, st := range r.Steps {
		fmt.Fprintf(w, "      %d. %-18s %-8s %s", i+1, st.Name, st.Result, st.Summary)
		if st.Error != "" {
			fmt.Fprintf(w, " error: %s", st.Error)
		}
		fmt.Fprintln(w)
	}
}
