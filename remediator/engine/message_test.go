package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDecodeRealCaptures(t *testing.T) {
	files, err := filepath.Glob("../../testdata/alertmanager/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			m, err := Decode(bytes.NewReader(data))
			require.NoError(t, err)
			require.Equal(t, "4", m.Version)
			require.NotEmpty(t, m.Alerts)
			for _, a := range m.Alerts {
				require.Contains(t, []string{"firing", "resolved"}, a.Status)
				require.NotEmpty(t, a.Fingerprint)
				if a.Status == "firing" {
					require.True(t, a.EndsAt.IsZero(), "firing alerts carry the zero endsAt")
				}
			}
		})
	}
}

// FuzzDecode feeds arbitrary bodies to the decoder: it must return a
// message or a PayloadError, never panic.
//
//	go test -fuzz FuzzDecode -fuzztime 60s ./remediator/engine/
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/alertmanager/*.json")
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"version":"4"}`))
	f.Add([]byte(`{"version":"4","alerts":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(bytes.NewReader(data))
		if err != nil {
			var pe *PayloadError
			require.ErrorAs(t, err, &pe)
			return
		}
		require.Equal(t, PayloadVersion, m.Version)
		require.NotNil(t, m.Alerts)
	})
}
