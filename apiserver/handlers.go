package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/companion/remediator/apiserver/store"
)

const (
	defaultPageSize = 20
	maxPageSize     = 100
	maxBulkSize     = 500
)

func (s *Server) getDocument(w http.ResponseWriter, r *http.Request) {
	col, id, ok := s.docParams(w, r)
	if !ok {
		return
	}
	body, err := s.cache.Get(r.Context(), col+"/"+id, func(ctx context.Context) ([]byte, error) {
		doc, err := s.store.Get(ctx, col, id)
		if err != nil {
			return nil, err
		}
		return marshalLine(doc)
	})
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) createDocument(w http.ResponseWriter, r *http.Request) {
	col := chi.URLParam(r, "collection")
	if err := store.ValidCollection(col); err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return
	}
	data, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		s.writeError(w, r, http.StatusInternalServerError, fmt.Errorf("make document id: %w", err))
		return
	}
	doc := store.Document{ID: hex.EncodeToString(raw[:]), Data: data, UpdatedAt: now()}
	if err := s.store.Put(r.Context(), col, doc); err != nil {
		s.storeError(w, r, err)
		return
	}
	w.Header().Set("Location", r.URL.Path+"/"+doc.ID)
	writeJSON(w, http.StatusCreated, doc)
}

func (s *Server) replaceDocument(w http.ResponseWriter, r *http.Request) {
	col, id, ok := s.docParams(w, r)
	if !ok {
		return
	}
	data, ok := s.readBody(w, r)
	if !ok {
		return
	}
	doc := store.Document{ID: id, Data: data, UpdatedAt: now()}
	if err := s.store.Put(r.Context(), col, doc); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.invalidate(r.Context(), col, id)
	writeJSON(w, http.StatusOK, doc)
}

func (s *Server) deleteDocument(w http.ResponseWriter, r *http.Request) {
	col, id, ok := s.docParams(w, r)
	if !ok {
		return
	}
	if err := s.store.Delete(r.Context(), col, id); err != nil {
		s.storeError(w, r, err)
		return
	}
	s.invalidate(r.Context(), col, id)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listDocuments(w http.ResponseWriter, r *http.Request) {
	col := chi.URLParam(r, "collection")
	offset, limit, err := paging(r)
	if err == nil {
		err = store.ValidCollection(col)
	}
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return
	}
	page, err := s.store.List(r.Context(), col, offset, limit)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) searchDocuments(w http.ResponseWriter, r *http.Request) {
	col := chi.URLParam(r, "collection")
	q := r.URL.Query().Get("q")
	offset, limit, err := paging(r)
	if err == nil {
		err = store.ValidCollection(col)
	}
	if err == nil && len(store.Words(q)) == 0 {
		err = errors.New("query parameter q must hold at least one word")
	}
	if err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return
	}
	page, err := s.store.Search(r.Context(), col, q, offset, limit)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// bulkItem is one element of the POST .../bulk body.
type bulkItem struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
}

func (s *Server) bulkDocuments(w http.ResponseWriter, r *http.Request) {
	col := chi.URLParam(r, "collection")
	if err := store.ValidCollection(col); err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return
	}
	var items []bulkItem
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&items); err != nil {
		s.writeError(w, r, http.StatusBadRequest, fmt.Errorf("decode bulk body: %w", err))
		return
	}
	if len(items) == 0 || len(items) > maxBulkSize {
		s.writeError(w, r, http.StatusBadRequest,
			fmt.Errorf("bulk body holds %d documents: want 1 to %d", len(items), maxBulkSize))
		return
	}
	docs := make([]store.Document, 0, len(items))
	var errs []error
	for i, it := range items {
		if err := errors.Join(store.ValidID(it.ID), store.ValidData(it.Data)); err != nil {
			errs = append(errs, fmt.Errorf("item %d: %w", i, err))
		}
		docs = append(docs, store.Document{ID: it.ID, Data: it.Data, UpdatedAt: now()})
	}
	if len(errs) > 0 {
		s.writeError(w, r, http.StatusBadRequest, errors.Join(errs...))
		return
	}
	if err := s.store.PutMany(r.Context(), col, docs); err != nil {
		s.storeError(w, r, err)
		return
	}
	for _, d := range docs {
		s.invalidate(r.Context(), col, d.ID)
	}
	writeJSON(w, http.StatusOK, map[string]int{"indexed": len(docs)})
}

// invalidate drops a written document from every replica's cache. The
// write has happened either way, so a failure is logged, not returned.
func (s *Server) invalidate(ctx context.Context, col, id string) {
	if err := s.cache.Invalidate(ctx, col+"/"+id); err != nil {
		s.log.Warn("cache_invalidate_failed", "collection", col, "id", id, "err", err)
	}
}

func (s *Server) docParams(w http.ResponseWriter, r *http.Request) (col, id string, ok bool) {
	col, id = chi.URLParam(r, "collection"), chi.URLParam(r, "id")
	if err := errors.Join(store.ValidCollection(col), store.ValidID(id)); err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return "", "", false
	}
	return col, id, true
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (json.RawMessage, bool) {
	var data json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err := dec.Decode(&data); err != nil {
		s.writeError(w, r, http.StatusBadRequest, fmt.Errorf("decode document body: %w", err))
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		s.writeError(w, r, http.StatusBadRequest,
			errors.New("decode document body: data after the JSON object"))
		return nil, false
	}
	if err := store.ValidData(data); err != nil {
		s.writeError(w, r, http.StatusBadRequest, err)
		return nil, false
	}
	return data, true
}

func paging(r *http.Request) (offset, limit int, err error) {
	q := r.URL.Query()
	offset, limit = 0, defaultPageSize
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			return 0, 0, fmt.Errorf("offset %q: want a whole number from 0", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxPageSize {
			return 0, 0, fmt.Errorf("limit %q: want a whole number from 1 to %d", v, maxPageSize)
		}
	}
	return offset, limit, nil
}

// storeError maps a store or cache error to a status: bad input 400,
// missing 404, deadline 504, anything else 503 (a dependency failed).
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrInvalid):
		s.writeError(w, r, http.StatusBadRequest, err)
	case errors.Is(err, store.ErrNotFound):
		s.writeError(w, r, http.StatusNotFound, err)
	case errors.Is(err, context.DeadlineExceeded):
		s.writeError(w, r, http.StatusGatewayTimeout, err)
	default:
		s.writeError(w, r, http.StatusServiceUnavailable, err)
	}
}

type errorBody struct {
	Error string `json:"error"`
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, status int, err error) {
	if status >= 500 {
		s.log.Debug("request_failed", "method", r.Method, "path", r.URL.Path,
			"status", status, "err", err)
	}
	writeJSON(w, status, errorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshalLine(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`+"\n")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func marshalLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode json: %w", err)
	}
	return append(b, '\n'), nil
}

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }
