package testenv

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Bodies keeps every request body that reaches the handler it wraps, such
// as the webhook notifications Alertmanager posts.
type Bodies struct {
	mu  sync.Mutex
	all []string
}

// Wrap returns next with every request body recorded before next reads it.
func (b *Bodies) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.all = append(b.all, string(body))
		b.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// Count returns how many recorded bodies contain sub.
func (b *Bodies) Count(sub string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.all {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}
