package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/companion/remediator/remediator/testenv"
)

// TestServeAsANewUserWould builds the binary, runs `remediator serve` on the
// example configuration, posts the example payload, and reads the plan in
// the log and in /metrics; then reloads with SIGHUP.
func TestServeAsANewUserWould(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "remediator")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	// No cluster: whatever kubeconfig this machine has is not used.
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "no-such-kubeconfig"))
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	proc := testenv.Start(t, "../..", bin, "serve", "--config", "examples/remediator.yml",
		"--listen", addr, "--data-dir", t.TempDir())
	base := "http://" + addr
	testenv.WaitHTTP(t, proc, base+"/-/ready", 10*time.Second)
	require.Contains(t, proc.Output(), "PLAN-ONLY MODE")

	body, err := os.ReadFile("../../examples/payloads/high-error-rate-firing.json")
	require.NoError(t, err)
	resp, err := http.Post(base+"/webhook/alertmanager", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(answer))
	require.Contains(t, string(answer), `"outcome": "matched"`)

	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(metrics(t, base),
			`remediator_runs_total{playbook="companion-api-high-error-rate",result="planned"} 1`)
	}, "the planned run is not in /metrics")
	require.Contains(t, proc.Output(), "would restart Deployment companion/companion-api")

	require.NoError(t, syscall.Kill(proc.PID(), syscall.SIGHUP))
	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(metrics(t, base), `remediator_config_reloads_total{result="success"} 2`)
	}, "SIGHUP did not reload")
}

func metrics(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestCheckReportsEveryError(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yml"),
		[]byte("version: 1\nname: a\nmatch: {alertname: A}\ntarget: {kind: Pod}\nsteps: [{action: fly}]\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "remediator.yml"),
		[]byte("playbooks: ['*.yml']\nnamespaces: [default]\nlisten: 127.0.0.1:0\nbogus: 1\n"), 0o600))
	var stdout, stderr bytes.Buffer
	code := run([]string{"check", "--config", filepath.Join(dir, "remediator.yml")}, &stdout, &stderr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "line 4: unknown field bogus")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "remediator.yml"),
		[]byte("playbooks: ['*.yml']\nnamespaces: [default]\n"), 0o600))
	stderr.Reset()
	code = run([]string{"check", "--config", filepath.Join(dir, "remediator.yml")}, &stdout, &stderr)
	require.Equal(t, 1, code)
	for _, want := range []string{
		`a.yml:4: target.kind must be Deployment or StatefulSet, got "Pod"`,
		"a.yml:4: target.namespace is required",
		`a.yml:5: unknown action "fly"`,
	} {
		require.Contains(t, stderr.String(), want)
	}
}

func TestSimulateShowsThePlan(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"simulate", "--config", "../../examples/remediator.yml",
		"../../examples/payloads/high-error-rate-firing.json",
		"../../examples/payloads/high-error-rate-firing.json"}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	out := stdout.String()
	for _, want := range []string{
		"playbook companion-api-high-error-rate -> Deployment companion/companion-api",
		"guards (cooldown 30m, at most 3 runs per 6h): passed",
		"1. restart            planned  would restart Deployment companion/companion-api",
		"duplicate of a run already claimed",
	} {
		require.Contains(t, out, want)
	}
}
