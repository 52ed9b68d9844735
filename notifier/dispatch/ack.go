package dispatch

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// maxAckBody bounds the body of an acknowledgement.
const maxAckBody = 4 << 10

// ackRequest is the optional JSON body of an acknowledgement.
type ackRequest struct {
	// By names who acknowledges; "api" when empty.
	By string `json:"by"`
}

// ackResponse answers a successful acknowledgement.
type ackResponse struct {
	Incident       string `json:"incident"`
	AcknowledgedBy string `json:"acknowledged_by"`
}

// AckHandler serves POST /api/v1/incidents/{id}/ack with an optional body
// {"by": "alice"}. id extracts the incident ID from the request; when nil,
// r.PathValue("id") is used (net/http patterns). Authentication is the
// router's job. It answers 200 with the incident and who acknowledged, 404
// when no chain runs for the incident, 400 for a malformed body and 503
// when the state store fails, so the caller may retry.
func (d *Dispatcher) AckHandler(id func(*http.Request) string) http.Handler {
	if id == nil {
		id = func(r *http.Request) string { return r.PathValue("id") }
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "acknowledge with POST")
			return
		}
		incident := strings.TrimSpace(id(r))
		if incident == "" {
			writeError(w, http.StatusBadRequest, "no incident id in the path")
			return
		}
		var req ackRequest
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAckBody))
		if err != nil {
			writeError(w, http.StatusBadRequest, "read body: "+err.Error())
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				writeError(w, http.StatusBadRequest, "decode body: "+err.Error())
				return
			}
		}
		if req.By = strings.TrimSpace(req.By); req.By == "" {
			req.By = "api"
		}
		err = d.Ack(r.Context(), incident, req.By)
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, err.Error())
		case err != nil:
			d.logger.ErrorContext(r.Context(), "ack_failed", "incident", incident, "err", err)
			writeError(w, http.StatusServiceUnavailable, "acknowledgement not recorded, try again")
		default:
			writeJSON(w, http.StatusOK, ackResponse{Incident: incident, AcknowledgedBy: req.By})
		}
	})
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
