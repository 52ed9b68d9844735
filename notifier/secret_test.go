package notifier

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	t.Setenv("REMEDIATOR_TEST_SECRET", "from-env")
	t.Setenv("REMEDIATOR_TEST_EMPTY", "")
	tests := []struct {
		name      string
		path, env string
		want      string
		err       string
	}{
		{name: "file with newline", path: write("a", "hunter2\n"), want: "hunter2"},
		{name: "file wins over env", path: write("b", "file"), env: "REMEDIATOR_TEST_SECRET",
			want: "file"},
		{name: "env", env: "REMEDIATOR_TEST_SECRET", want: "from-env"},
		{name: "missing file", path: filepath.Join(dir, "nope"), err: "read token file"},
		{name: "unset env", env: "REMEDIATOR_TEST_UNSET",
			err: "environment variable REMEDIATOR_TEST_UNSET is not set"},
		{name: "empty", env: "REMEDIATOR_TEST_EMPTY", err: "read token: it is empty"},
		{name: "nothing named", err: "neither a file nor an environment variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadSecret("token", tt.path, tt.env)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
