package apiserver

import (
	"context"
	"net/http"
)

// healthBody is what GET /health answers.
type healthBody struct {
	// Status is "ok", "degraded" (serving, a cache dependency is down) or
	// "down" (cannot serve).
	Status string      `json:"status"`
	Store  checkResult `json:"store"`
	Cache  cacheCheck  `json:"cache"`
}

type checkResult struct {
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

type cacheCheck struct {
	checkResult
	L1Entries int `json:"l1_entries"`
	L1Size    int `json:"l1_size"`
}

// health checks each dependency. It answers 200 while the store answers,
// since reads fall back to the store when Redis is down; the body then
// says "degraded". A store that does not answer makes it 503.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.DependencyTimeout)
	defer cancel()

	body := healthBody{Status: "ok"}
	body.Store = result(s.store.Kind(), s.store.Check(ctx))
	l2 := "none"
	if s.cache.HasL2() {
		l2 = "redis"
	}
	body.Cache = cacheCheck{
		checkResult: result(l2, s.cache.Check(ctx)),
		L1Entries:   s.cache.L1Len(),
		L1Size:      s.cfg.L1Size,
	}

	status := http.StatusOK
	switch {
	case body.Store.Error != "":
		body.Status, status = "down", http.StatusServiceUnavailable
	case body.Cache.Error != "":
		body.Status = "degraded"
	}
	writeJSON(w, status, body)
}

func result(kind string, err error) checkResult {
	if err != nil {
		return checkResult{Kind: kind, Status: "error", Error: err.Error()}
	}
	return checkResult{Kind: kind, Status: "ok"}
}
