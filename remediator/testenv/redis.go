package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server started by StartRedis for one test.
type Redis struct {
	// Addr is the host:port the server listens on, always on 127.0.0.1.
	Addr string
	// Dir is the server's working directory, a temporary one.
	Dir string
	// Process is the running program.
	Process *Process
}

// StartRedis starts the Debian redis-server on a free loopback port with
// persistence off and its directory in a temporary one, and waits until it
// answers PING. Extra args, such as "--requirepass", "secret", are added to
// the command line. The server stops when the test ends. Tests get their
// own server this way and never touch a Redis the machine runs for itself.
// StartRedis fails the test, with a hint to run `make deps`, when
// redis-server is not installed.
func StartRedis(t testing.TB, args ...string) *Redis {
	t.Helper()
	dir := t.TempDir()

	// Another program may take the free port before redis-server binds it;
	// then the server exits at once and another port is tried.
	var lastOutput string
	for range 3 {
		port := FreePort(t)
		full := append([]string{
			"--save", "",
			"--appendonly", "no",
			"--bind", "127.0.0.1",
			"--port", fmt.Sprint(port),
			"--dir", dir,
			"--loglevel", "warning",
		}, args...)
		r := &Redis{
			Addr:    fmt.Sprintf("127.0.0.1:%d", port),
			Dir:     dir,
			Process: Start(t, dir, "redis-server", full...),
		}
		if r.waitReady(t, 10*time.Second) {
			return r
		}
		lastOutput = r.Process.Output()
	}
	t.Fatalf("redis-server did not start on a free port:\n%s", lastOutput)
	return nil
}

// waitReady sends PING until the server answers, ignoring authentication
// errors, which also prove that it serves. It reports false when the server
// exited, and fails the test when timeout passes.
func (r *Redis) waitReady(t testing.TB, timeout time.Duration) bool {
	t.Helper()
	client := redis.NewClient(&redis.Options{
		Addr:        r.Addr,
		DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
	})
	defer client.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil || isAuthError(err) {
			return true
		}
		if r.Process.Exited() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING within %s (last error: %v):\n%s",
				r.Addr, timeout, err, r.Process.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isAuthError(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "NOAUTH") || strings.HasPrefix(msg, "WRONGPASS")
}

// Stop ends the server now, before the test ends, so that a test can see
// how its code handles Redis going away. It is safe to call more than once.
func (r *Redis) Stop() { r.Process.Stop() }
