package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/companion/remediator/notifier"
	"github.com/companion/remediator/remediator/action"
	"github.com/companion/remediator/remediator/playbook"
	"github.com/companion/remediator/remediator/state"
)

// benchPlaybooks builds n playbooks, one per alertname Alert0..Alert<n-1>.
func benchPlaybooks(b *testing.B, n int) *playbook.Set {
	b.Helper()
	pbs := make([]*playbook.Playbook, 0, n)
	for i := range n {
		src := fmt.Sprintf(`version: 1
name: pb-%d
match:
  alertname: Alert%d
  matchers: ['severity=~"critical|warning"', 'team!="db"']
target: {kind: Deployment, namespace: '{{ .Labels.namespace }}', name: '{{ .Labels.deployment }}'}
steps: [{action: restart}, {action: verify}]
`, i, i)
		pb, errs := playbook.Parse(fmt.Sprintf("pb-%d.yml", i), []byte(src))
		if len(errs) > 0 {
			b.Fatal(errs)
		}
		pbs = append(pbs, pb)
	}
	set, err := playbook.NewSet(pbs...)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// benchPayloads makes n webhook bodies of 10 firing alerts each, every
// alert a new instance (its own fingerprint), so none is a duplicate.
func benchPayloads(n int) [][]byte {
	out := make([][]byte, n)
	starts := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	for i := range n {
		var buf bytes.Buffer
		buf.WriteString(`{"receiver":"remediator","status":"firing","alerts":[`)
		for j := range 10 {
			if j > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, `{"status":"firing","labels":{"alertname":"Alert%d","namespace":"shop",`+
				`"deployment":"web-%d","severity":"critical","instance":"10.0.0.%d:8080"},`+
				`"annotations":{"summary":"error ratio is high","runbook_url":"https://runbooks.invalid/x"},`+
				`"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z",`+
				`"generatorURL":"http://prometheus:9090/graph?g0.expr=x","fingerprint":"%016x"}`,
				(i*10+j)%1000, j, j, starts.Format(time.RFC3339Nano), i*10+j)
		}
		buf.WriteString(`],"groupLabels":{"alertname":"Alert1"},"commonLabels":{"severity":"critical"},` +
			`"commonAnnotations":{},"externalURL":"http://alertmanager:9093","version":"4",` +
			`"groupKey":"{}:{alertname=\"Alert1\"}","truncatedAlerts":0}`)
		out[i] = buf.Bytes()
	}
	return out
}

// BenchmarkIntake compares the remediator's intake (decode, dedupe claim,
// match among 1,000 playbooks, render, record, enqueue) with a bare handler
// that only decodes the same bytes. Both report alerts/s; the ratio is the
// figure of merit (target: intake at least 0.8 of bare).
//
//	go test -run '^$' -bench Intake -benchtime 20000x ./remediator/engine/
func BenchmarkIntake(b *testing.B) {
	b.Run("bare-decode", func(b *testing.B) {
		payloads := benchPayloads(b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, err := Decode(bytes.NewReader(payloads[i])); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "alerts/s")
	})
	b.Run("intake", func(b *testing.B) {
		set := benchPlaybooks(b, 1000)
		payloads := benchPayloads(b.N)
		e := New(slog.New(slog.DiscardHandler), state.NewMemory(),
			&action.PlanOnly{}, &notifier.Log{}, prometheus.NewRegistry(),
			&Rules{Playbooks: set, Namespaces: map[string]bool{"shop": true}},
			Options{QueueSize: b.N*10 + 1}) // room for every run: only intake is measured
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Workers take jobs off the queue as in production; here they drop
		// them, so only intake is measured and queued alerts do not pile up
		// in the heap.
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-e.queue:
					e.busy.Add(-1)
				}
			}
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			m, err := Decode(bytes.NewReader(payloads[i]))
			if err != nil {
				b.Fatal(err)
			}
			sum, err := e.Handle(ctx, m)
			if err != nil {
				b.Fatal(err)
			}
			if sum.Decisions[0].Outcome != OutcomeMatched {
				b.Fatalf("decision %+v", sum.Decisions[0])
			}
		}
		b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "alerts/s")
	})
}
