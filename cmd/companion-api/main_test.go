package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, workers, l1Size int, l1TTL time.Duration, es []string, faults bool)
		err   string
	}{
		{
			name: "defaults",
			// ELASTICSEARCH_URL may be set for the real-cluster store test.
			env: map[string]string{"ELASTICSEARCH_URL": ""},
			check: func(t *testing.T, workers, l1Size int, l1TTL time.Duration, es []string, _ bool) {
				require.Equal(t, 4, workers)
				require.Equal(t, 100, l1Size)
				require.Equal(t, time.Minute, l1TTL)
				require.Empty(t, es)
			},
		},
		{
			name: "environment",
			env: map[string]string{"WORKERS": "8", "CACHE_L1_SIZE": "500", "CACHE_L1_TTL": "30",
				"ELASTICSEARCH_URL": "http://a:9200, http://b:9200", "FAULTS_ENABLED": "true"},
			check: func(t *testing.T, workers, l1Size int, l1TTL time.Duration, es []string, f bool) {
				require.Equal(t, 8, workers)
				require.Equal(t, 500, l1Size)
				require.Equal(t, 30*time.Second, l1TTL)
				require.Equal(t, []string{"http://a:9200", "http://b:9200"}, es)
				require.True(t, f)
			},
		},
		{
			name: "flags win over environment",
			env:  map[string]string{"WORKERS": "8"},
			args: []string{"--workers", "2"},
			check: func(t *testing.T, workers, _ int, _ time.Duration, _ []string, _ bool) {
				require.Equal(t, 2, workers)
			},
		},
		{
			name: "bad environment value",
			env:  map[string]string{"WORKERS": "many"},
			err:  `WORKERS="many": want a whole number`,
		},
		{
			name: "bad log level",
			args: []string{"--log-level", "loud"},
			err:  "log level",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, _, err := parseFlags(tc.args)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.check(t, cfg.Workers, cfg.L1Size, cfg.L1TTL, cfg.ElasticsearchURLs, cfg.Faults.Enabled)
		})
	}
}

// TestSecretsComeFromEnvironmentOrFiles checks that passwords are read from
// the environment or a file, and that no flag takes them.
func TestSecretsComeFromEnvironmentOrFiles(t *testing.T) {
	file := filepath.Join(t.TempDir(), "es-pass")
	require.NoError(t, os.WriteFile(file, []byte("from-file\n"), 0o600))
	t.Setenv("REDIS_PASSWORD", "from-env")
	cfg, _, err := parseFlags([]string{"--elasticsearch-password-file", file})
	require.NoError(t, err)
	require.Equal(t, "from-env", cfg.RedisPassword)
	require.Equal(t, "from-file", cfg.ElasticsearchPassword)

	_, _, err = parseFlags([]string{"--redis-password", "leaky"})
	require.Error(t, err, "a password flag would show in the process list")
}
