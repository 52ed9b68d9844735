package remediator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

// Replay posts each payload file to a running remediator's webhook, as
// Alertmanager would, and prints each answer.
func Replay(ctx context.Context, w io.Writer, url, token string, files []string) error {
	client := &http.Client{Timeout: 10 * time.Second}
	var failed []string
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read payload: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("replay %s: %w", f, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "remediator-replay/"+Version())
		if token = strings.TrimSpace(token); token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("replay %s: %w", f, err)
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		fmt.Fprintf(w, "%s: %s\n%s\n", f, resp.Status, bytes.TrimSpace(answer))
		if resp.StatusCode/100 != 2 {
			failed = append(failed, fmt.Sprintf("%s: %s", f, resp.Status))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("the remediator refused %d of %d payloads: %s",
			len(failed), len(files), strings.Join(failed, "; "))
	}
	return nil
}

// Version returns the module version the binary was built from.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" {
		return "remediator (devel)"
	}
	return "remediator " + bi.Main.Version + " " + bi.GoVersion
}
