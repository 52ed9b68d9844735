package state

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUpdateIncidentIsAtomic appends runs to one incident from many
// goroutines at once: none is lost.
func TestUpdateIncidentIsAtomic(t *testing.T) {
	bs, err := OpenBolt(filepath.Join(t.TempDir(), "s.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = bs.Close() })
	stores := map[string]interface {
		Store
		IncidentUpdater
	}{"memory": NewMemory(), "bolt": bs}
	for name, st := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			var wg sync.WaitGroup
			for i := range 40 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := st.UpdateIncident(ctx, "inc", func(inc *Incident, found bool) bool {
						if !found {
							*inc = Incident{ID: "inc", Status: StatusOpen}
						}
						inc.Runs = append(inc.Runs, Run{ID: string(rune('a' + i%26))})
						return true
					})
					require.NoError(t, err)
				}()
			}
			wg.Wait()
			inc, found, err := st.Incident(ctx, "inc")
			require.NoError(t, err)
			require.True(t, found)
			require.Len(t, inc.Runs, 40)

			// change returning false writes nothing.
			require.NoError(t, st.UpdateIncident(ctx, "other", func(*Incident, bool) bool { return false }))
			_, found, err = st.Incident(ctx, "other")
			require.NoError(t, err)
			require.False(t, found)
		})
	}
}
