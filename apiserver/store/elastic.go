package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// ElasticConfig configures the Elasticsearch store.
type ElasticConfig struct {
	// Addresses are the node URLs, such as http://127.0.0.1:9200.
	Addresses []string
	// Username and Password are for HTTP basic auth; APIKey, when set,
	// is used instead.
	Username string
	Password string
	APIKey   string
	// IndexPrefix is put before a collection name to make its index name.
	IndexPrefix string
	// Timeout bounds each call to Elasticsearch.
	Timeout time.Duration
}

// Elastic keeps each collection in its own Elasticsearch index, created on
// first write with a strict mapping: the document is stored but not
// indexed field by field (so documents of any shape never conflict), and
// its string values are indexed as one full-text field. Writes use
// refresh=wait_for so that a list or search right after a write sees it.
type Elastic struct {
	es      *elasticsearch.Client
	cfg     ElasticConfig
	created sync.Map // index name -> struct{}
}

// esSource is the stored _source of one document.
type esSource struct {
	ID        string          `json:"id"`
	Text      string          `json:"text"`
	Doc       json.RawMessage `json:"doc"`
	UpdatedAt time.Time       `json:"updated_at"`
}

const esMapping = `{"mappings":{"dynamic":"strict","properties":{` +
	`"id":{"type":"keyword"},"text":{"type":"text"},` +
	`"doc":{"type":"object","enabled":false},"updated_at":{"type":"date"}}}}`

// NewElastic builds the store. It does not contact Elasticsearch; Check
// does.
func NewElastic(cfg ElasticConfig) (*Elastic, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("elasticsearch store: no address configured")
	}
	if cfg.IndexPrefix == "" {
		cfg.IndexPrefix = "companion-"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   32,
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: cfg.Addresses,
		Username:  cfg.Username,
		Password:  cfg.Password,
		APIKey:    cfg.APIKey,
		Transport: transport,
	})
	if err != nil {
		return nil, fmt.Errorf("build elasticsearch client: %w", err)
	}
	return &Elastic{es: es, cfg: cfg}, nil
}

// Kind returns "elasticsearch".
func (e *Elastic) Kind() string { return "elasticsearch" }

func (e *Elastic) index(collection string) string { return e.cfg.IndexPrefix + collection }

func (e *Elastic) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.Timeout)
}

// Check pings the cluster.
func (e *Elastic) Check(ctx context.Context) error {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	res, err := e.es.Ping(e.es.Ping.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("ping elasticsearch: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("ping elasticsearch: status %d", res.StatusCode)
	}
	return nil
}

// Get returns the document or ErrNotFound.
func (e *Elastic) Get(ctx context.Context, collection, id string) (Document, error) {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	res, err := e.es.Get(e.index(collection), id, e.es.Get.WithContext(ctx))
	if err != nil {
		return Document{}, fmt.Errorf("get %s/%s from elasticsearch: %w", collection, id, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return Document{}, ErrNotFound
	}
	var body struct {
		Found  bool     `json:"found"`
		Source esSource `json:"_source"`
	}
	if err := decode(res, &body); err != nil {
		return Document{}, fmt.Errorf("get %s/%s from elasticsearch: %w", collection, id, err)
	}
	if !body.Found {
		return Document{}, ErrNotFound
	}
	return body.Source.document(), nil
}

// Put creates or replaces the document.
func (e *Elastic) Put(ctx context.Context, collection string, doc Document) error {
	if err := e.ensureIndex(ctx, collection); err != nil {
		return err
	}
	src, err := json.Marshal(sourceOf(doc))
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", collection, doc.ID, err)
	}
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	res, err := e.es.Index(e.index(collection), bytes.NewReader(src),
		e.es.Index.WithDocumentID(doc.ID),
		e.es.Index.WithRefresh("wait_for"),
		e.es.Index.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("index %s/%s in elasticsearch: %w", collection, doc.ID, err)
	}
	defer res.Body.Close()
	if err := decode(res, nil); err != nil {
		return fmt.Errorf("index %s/%s in elasticsearch: %w", collection, doc.ID, err)
	}
	return nil
}

// PutMany creates or replaces the documents with one bulk request.
func (e *Elastic) PutMany(ctx context.Context, collection string, docs []Document) error {
	if len(docs) == 0 {
		return nil
	}
	if err := e.ensureIndex(ctx, collection); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, d := range docs {
		action := map[string]map[string]string{"index": {"_id": d.ID}}
		if err := enc.Encode(action); err != nil {
			return fmt.Errorf("encode bulk action for %s: %w", d.ID, err)
		}
		if err := enc.Encode(sourceOf(d)); err != nil {
			return fmt.Errorf("encode bulk document %s: %w", d.ID, err)
		}
	}
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	res, err := e.es.Bulk(&buf,
		e.es.Bulk.WithIndex(e.index(collection)),
		e.es.Bulk.WithRefresh("wait_for"),
		e.es.Bulk.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("bulk index %d documents in %s: %w", len(docs), collection, err)
	}
	defer res.Body.Close()
	var body struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			ID     string          `json:"_id"`
			Status int             `json:"status"`
			Error  json.RawMessage `json:"error"`
		} `json:"items"`
	}
	if err := decode(res, &body); err != nil {
		return fmt.Errorf("bulk index %d documents in %s: %w", len(docs), collection, err)
	}
	if !body.Errors {
		return nil
	}
	var failed []string
	for _, item := range body.Items {
		for _, r := range item {
			if r.Status >= 300 {
				failed = append(failed, fmt.Sprintf("%s: %d %s", r.ID, r.Status, r.Error))
			}
		}
	}
	return fmt.Errorf("bulk index in %s: %d of %d failed: %s",
		collection, len(failed), len(docs), strings.Join(failed, "; "))
}

// Delete removes the document or returns ErrNotFound.
func (e *Elastic) Delete(ctx context.Context, collection, id string) error {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	res, err := e.es.Delete(e.index(collection), id,
		e.es.Delete.WithRefresh("wait_for"),
		e.es.Delete.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("delete %s/%s from elasticsearch: %w", collection, id, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return ErrNotFound
	}
	if err := decode(res, nil); err != nil {
		return fmt.Errorf("delete %s/%s from elasticsearch: %w", collection, id, err)
	}
	return nil
}

// List returns documents ordered by id.
func (e *Elastic) List(ctx context.Context, collection string, offset, limit int) (Page, error) {
	return e.search(ctx, collection, map[string]any{"match_all": map[string]any{}}, offset, limit)
}

// Search returns documents whose text matches every word of query.
func (e *Elastic) Search(
	ctx context.Context,
	collection, query string,
	offset, limit int,
) (Page, error) {
	q := map[string]any{"match": map[string]any{
		"text": map[string]any{"query": query, "operator": "and"},
	}}
	return e.search(ctx, collection, q, offset, limit)
}

func (e *Elastic) search(
	ctx context.Context,
	collection string,
	query any,
	offset, limit int,
) (Page, error) {
	req, err := json.Marshal(map[string]any{
		"query":            query,
		"from":             offset,
		"size":             limit,
		"sort":             []any{map[string]string{"id": "asc"}},
		"track_total_hits": true,
	})
	if err != nil {
		return Page{}, fmt.Errorf("encode search of %s: %w", collection, err)
	}
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	res, err := e.es.Search(
		e.es.Search.WithIndex(e.index(collection)),
		e.es.Search.WithBody(bytes.NewReader(req)),
		e.es.Search.WithContext(ctx))
	if err != nil {
		return Page{}, fmt.Errorf("search %s in elasticsearch: %w", collection, err)
	}
	defer res.Body.Close()
	page := Page{Documents: []Document{}, Offset: offset, Limit: limit}
	if res.StatusCode == http.StatusNotFound {
		return page, nil // no index yet: the collection is empty
	}
	var body struct {
		Hits struct {
			Total struct {
				Value int `json:"value"`
			} `json:"total"`
			Hits []struct {
				Source esSource `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := decode(res, &body); err != nil {
		return Page{}, fmt.Errorf("search %s in elasticsearch: %w", collection, err)
	}
	page.Total = body.Hits.Total.Value
	for _, h := range body.Hits.Hits {
		page.Documents = append(page.Documents, h.Source.document())
	}
	return page, nil
}

// ensureIndex creates the collection's index once per process; an index
// that already exists is fine.
func (e *Elastic) ensureIndex(ctx context.Context, collection string) error {
	name := e.index(collection)
	if _, ok := e.created.Load(name); ok {
		return nil
	}
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	res, err := e.es.Indices.Create(name,
		e.es.Indices.Create.WithBody(strings.NewReader(esMapping)),
		e.es.Indices.Create.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("create index %s: %w", name, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		if res.StatusCode != http.StatusBadRequest ||
			!bytes.Contains(b, []byte("resource_already_exists_exception")) {
			return fmt.Errorf("create index %s: status %d: %s", name, res.StatusCode, b)
		}
	}
	e.created.Store(name, struct{}{})
	return nil
}

func sourceOf(d Document) esSource {
	return esSource{ID: d.ID, Text: Text(d.Data), Doc: d.Data, UpdatedAt: d.UpdatedAt}
}

func (s esSource) document() Document {
	return Document{ID: s.ID, Data: s.Doc, UpdatedAt: s.UpdatedAt}
}

// decode fails on an error status, quoting the start of the body, and
// otherwise decodes the body into v when v is not nil.
func decode(res *esapi.Response, v any) error {
	if res.IsError() {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("status %d: %s", res.StatusCode, bytes.TrimSpace(b))
	}
	if v == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		return nil
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
