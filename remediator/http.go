package remediator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/companion/remediator/notifier/dispatch"
	"github.com/companion/remediator/remediator/engine"
	"github.com/companion/remediator/remediator/state"
)

// Handler returns the remediator's HTTP API:
//
//	POST /webhook/alertmanager          Alertmanager's webhook receiver
//	GET  /metrics                       Prometheus metrics
//	GET  /-/healthy, /-/ready           liveness and readiness
//	POST /-/reload                      reload configuration and playbooks
//	GET  /api/v1/incidents[/{id}]       incidents and their runs
//	GET  /api/v1/decisions              the latest decisions, with reasons
//
// When webhook credentials are configured, every route but /metrics and
// the health checks needs them.
func (a *App) Handler() http.Handler {
	r := chi.NewRouter()
	r.Get("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}).ServeHTTP)
	r.Get("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "OK")
	})
	r.Get("/-/ready", a.ready)
	r.Group(func(r chi.Router) {
		r.Use(a.authenticate)
		r.Post("/webhook/alertmanager", a.webhook)
		r.Post("/-/reload", a.reload)
		r.Get("/api/v1/incidents", a.listIncidents)
		r.Get("/api/v1/incidents/{id}", a.getIncident)
		r.Get("/api/v1/decisions", a.decisions)
		r.Post("/api/v1/incidents/{id}/ack", a.ack)
	})
	return r
}

// authenticate checks the bearer token or basic auth that Alertmanager's
// http_config sends, in constant time.
func (a *App) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wc := a.Config().Webhook
		ok := true
		switch {
		case wc.bearerToken != "":
			scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " ")
			// The scheme is case-insensitive (RFC 9110).
			ok = found && strings.EqualFold(scheme, "Bearer") && equal(strings.TrimSpace(tok), wc.bearerToken)
		case wc.BasicAuth != nil:
			user, pass, found := r.BasicAuth()
			// Both comparisons run, so timing does not tell which failed.
			u := equal(user, wc.BasicAuth.Username)
			p := equal(pass, wc.password)
			ok = found && u && p
		}
		if !ok {
			a.logger.DebugContext(r.Context(), "request refused: bad credentials",
				"path", r.URL.Path, "remote", r.RemoteAddr)
			a.authFailures.Inc()
			challenge := `Bearer realm="remediator"`
			if wc.BasicAuth != nil {
				challenge = `Basic realm="remediator", charset="UTF-8"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeError(w, http.StatusUnauthorized, "missing or wrong credentials")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// equal compares secrets in constant time, whatever their lengths.
func equal(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func (a *App) webhook(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, a.Config().Webhook.MaxBodyBytes)
	msg, err := engine.Decode(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge,
				"webhook payload is larger than webhook.max_body_bytes")
			return
		}
		a.logger.InfoContext(ctx, "webhook payload refused", "err", err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sum, err := a.engine.Handle(ctx, msg)
	if err != nil {
		// The claim or the queue failed: nothing was acted on, and a retry
		// from Alertmanager will be judged afresh.
		a.logger.ErrorContext(ctx, "webhook not accepted, asking alertmanager to retry", "err", err)
		w.Header().Set("Retry-After", "10")
		msg := "cannot record the alert now, retry later"
		if errors.Is(err, engine.ErrQueueFull) {
			msg = "the run queue is full, retry later"
		}
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	writeJSON(w, http.StatusOK, sum)
}

func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := a.store.Ping(ctx); err != nil {
		a.logger.WarnContext(ctx, "not ready", "err", err)
		writeError(w, http.StatusServiceUnavailable, "state store unavailable")
		return
	}
	writeText(w, http.StatusOK, "OK")
}

func (a *App) reload(w http.ResponseWriter, r *http.Request) {
	if err := a.Reload(r.Context()); err != nil {
		writeError(w, http.StatusInternalServerError, "reload failed, previous playbooks kept: "+err.Error())
		return
	}
	writeText(w, http.StatusOK, "reloaded")
}

func (a *App) listIncidents(w http.ResponseWriter, r *http.Request) {
	openOnly := false
	if v := r.URL.Query().Get("open"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "open must be true or false, got "+strconv.Quote(v))
			return
		}
		openOnly = b
	}
	incs, err := a.store.Incidents(r.Context(), openOnly)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if incs == nil {
		incs = []state.Incident{}
	}
	writeJSON(w, http.StatusOK, incs)
}

func (a *App) getIncident(w http.ResponseWriter, r *http.Request) {
	inc, found, err := a.store.Incident(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "no such incident")
		return
	}
	writeJSON(w, http.StatusOK, inc)
}

// ack acknowledges an incident: its escalation chain stops and the
// incident records who took it. The body may name them: {"by": "alice"}.
func (a *App) ack(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := chi.URLParam(r, "id")
	var body struct {
		By string `json:"by"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "ack body must be JSON like {\"by\": \"alice\"}: "+err.Error())
		return
	}
	by := strings.TrimSpace(body.By)
	if by == "" {
		by = "api"
	}
	if len(by) > 100 {
		writeError(w, http.StatusBadRequest, "by is longer than 100 bytes")
		return
	}
	found, err := a.engine.Acknowledge(ctx, id, by)
	if errors.Is(err, engine.ErrAlreadyClosed) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, "no such incident")
		return
	}
	if a.dispatcher != nil {
		err := a.dispatcher.Ack(ctx, id, by)
		if err != nil && !errors.Is(err, dispatch.ErrNotFound) {
			a.storeError(w, r, err)
			return
		}
	}
	a.logger.InfoContext(ctx, "incident acknowledged", "incident", id, "by", by)
	inc, _, err := a.store.Incident(ctx, id)
	if err != nil {
		a.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, inc)
}

func (a *App) decisions(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.engine.Recent())
}

func (a *App) storeError(w http.ResponseWriter, r *http.Request, err error) {
	a.logger.ErrorContext(r.Context(), "state store request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusServiceUnavailable, "state store unavailable")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}
