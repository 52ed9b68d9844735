package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// esStandIn is an in-process stand-in for the few Elasticsearch endpoints
// the Elastic store uses: ping, create index, index/get/delete a document,
// _search with match_all or match (operator and) sorted by id with
// from/size, and _bulk index actions. It is NOT a real Elasticsearch: it
// has no analyzers, scoring, or cluster; it answers in the documented
// response shapes and sends the X-Elastic-Product header that the
// go-elasticsearch client checks. TestElasticRealCluster covers the real
// thing when ELASTICSEARCH_URL is set.
type esStandIn struct {
	mu      sync.Mutex
	indices map[string]map[string]json.RawMessage // index -> id -> _source
	calls   []string                              // "METHOD path?query"
}

func startStandIn(t *testing.T) (*esStandIn, *httptest.Server) {
	t.Helper()
	s := &esStandIn{indices: map[string]map[string]json.RawMessage{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *esStandIn) callLog() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *esStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)

	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.URL.Path == "/":
		reply(w, 200, map[string]any{"version": map[string]string{"number": "8.19.0"},
			"tagline": "You Know, for Search"})
	case len(parts) == 1 && r.Method == http.MethodPut:
		s.createIndex(w, parts[0])
	case len(parts) == 2 && parts[1] == "_search":
		s.search(w, r, parts[0])
	case len(parts) == 2 && parts[1] == "_bulk":
		s.bulk(w, r, parts[0])
	case len(parts) == 3 && parts[1] == "_doc":
		s.doc(w, r, parts[0], parts[2])
	default:
		reply(w, 400, esError("illegal_argument_exception", "unsupported by the stand-in: "+r.URL.Path))
	}
}

func (s *esStandIn) createIndex(w http.ResponseWriter, index string) {
	if _, ok := s.indices[index]; ok {
		reply(w, 400, esError("resource_already_exists_exception", "index ["+index+"] already exists"))
		return
	}
	s.indices[index] = map[string]json.RawMessage{}
	reply(w, 200, map[string]any{"acknowledged": true, "index": index})
}

func (s *esStandIn) doc(w http.ResponseWriter, r *http.Request, index, id string) {
	docs, ok := s.indices[index]
	if !ok && r.Method != http.MethodPut {
		reply(w, 404, esError("index_not_found_exception", "no such index ["+index+"]"))
		return
	}
	switch r.Method {
	case http.MethodGet:
		src, found := docs[id]
		if !found {
			reply(w, 404, map[string]any{"_index": index, "_id": id, "found": false})
			return
		}
		reply(w, 200, map[string]any{"_index": index, "_id": id, "found": true, "_source": src})
	case http.MethodPut, http.MethodPost:
		var src json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&src); err != nil || !strictSource(src) {
			reply(w, 400, esError("strict_dynamic_mapping_exception", "source does not fit the mapping"))
			return
		}
		if !ok {
			docs = map[string]json.RawMessage{}
			s.indices[index] = docs
		}
		_, existed := docs[id]
		docs[id] = src
		status, result := 201, "created"
		if existed {
			status, result = 200, "updated"
		}
		reply(w, status, map[string]any{"_index": index, "_id": id, "result": result})
	case http.MethodDelete:
		if _, found := docs[id]; !found {
			reply(w, 404, map[string]any{"_index": index, "_id": id, "result": "not_found"})
			return
		}
		delete(docs, id)
		reply(w, 200, map[string]any{"_index": index, "_id": id, "result": "deleted"})
	default:
		reply(w, 405, esError("method_not_allowed", r.Method))
	}
}

// strictSource enforces the store's strict mapping: only its four fields.
func strictSource(src json.RawMessage) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(src, &m) != nil {
		return false
	}
	for k := range m {
		if !slices.Contains([]string{"id", "text", "doc", "updated_at"}, k) {
			return false
		}
	}
	return true
}

func (s *esStandIn) search(w http.ResponseWriter, r *http.Request, index string) {
	docs, ok := s.indices[index]
	if !ok {
		reply(w, 404, esError("index_not_found_exception", "no such index ["+index+"]"))
		return
	}
	var req struct {
		From  int `json:"from"`
		Size  int `json:"size"`
		Query struct {
			MatchAll *struct{} `json:"match_all"`
			Match    struct {
				Text struct {
					Query    string `json:"query"`
					Operator string `json:"operator"`
				} `json:"text"`
			} `json:"match"`
		} `json:"query"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		reply(w, 400, esError("parsing_exception", err.Error()))
		return
	}
	want := Words(req.Query.Match.Text.Query)
	var ids []string
	for id, src := range docs {
		var d esSource
		_ = json.Unmarshal(src, &d)
		if req.Query.MatchAll != nil || containsAll(Words(d.Text), want) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	hits := []map[string]any{}
	for i := req.From; i < len(ids) && i < req.From+req.Size; i++ {
		hits = append(hits, map[string]any{"_index": index, "_id": ids[i], "_source": docs[ids[i]]})
	}
	reply(w, 200, map[string]any{"hits": map[string]any{
		"total": map[string]any{"value": len(ids), "relation": "eq"},
		"hits":  hits,
	}})
}

func (s *esStandIn) bulk(w http.ResponseWriter, r *http.Request, index string) {
	docs, ok := s.indices[index]
	if !ok {
		docs = map[string]json.RawMessage{}
		s.indices[index] = docs
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var items []any
	failed := false
	for sc.Scan() {
		var action struct {
			Index struct {
				ID string `json:"_id"`
			} `json:"index"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || !sc.Scan() {
			reply(w, 400, esError("illegal_argument_exception", "malformed bulk body"))
			return
		}
		src := json.RawMessage(bytes.Clone(sc.Bytes()))
		item := map[string]any{"_index": index, "_id": action.Index.ID, "status": 201}
		if strictSource(src) {
			docs[action.Index.ID] = src
		} else {
			failed = true
			item["status"] = 400
			item["error"] = esError("strict_dynamic_mapping_exception", "bad source")["error"]
		}
		items = append(items, map[string]any{"index": item})
	}
	reply(w, 200, map[string]any{"errors": failed, "items": items})
}

func esError(kind, reason string) map[string]any {
	return map[string]any{"error": map[string]any{"type": kind, "reason": reason}}
}

func reply(w http.ResponseWriter, status int, body any) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func newServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
