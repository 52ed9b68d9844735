package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func doc(id, body string) Document {
	return Document{ID: id, Data: json.RawMessage(body), UpdatedAt: time.Unix(1700000000, 0).UTC()}
}

// testContract runs the behavior every Store must have against s.
func testContract(t *testing.T, s Store) {
	ctx := context.Background()
	col := "things"

	_, err := s.Get(ctx, col, "missing")
	require.ErrorIs(t, err, ErrNotFound, "get before any write")
	page, err := s.List(ctx, col, 0, 10)
	require.NoError(t, err, "list of a collection never written")
	require.Zero(t, page.Total)

	require.NoError(t, s.Put(ctx, col, doc("b", `{"name":"Blue Widget","tags":["sale"]}`)))
	require.NoError(t, s.PutMany(ctx, col, []Document{
		doc("a", `{"name":"red widget"}`),
		doc("c", `{"name":"green gadget","nested":{"note":"widget on sale"}}`),
	}))

	tests := []struct {
		name  string
		run   func() (Page, error)
		total int
		ids   []string
	}{
		{"list first page", func() (Page, error) { return s.List(ctx, col, 0, 2) }, 3, []string{"a", "b"}},
		{"list second page", func() (Page, error) { return s.List(ctx, col, 2, 2) }, 3, []string{"c"}},
		{"search one word", func() (Page, error) { return s.Search(ctx, col, "widget", 0, 10) },
			3, []string{"a", "b", "c"}},
		{"search every word must match", func() (Page, error) { return s.Search(ctx, col, "WIDGET sale", 0, 10) },
			2, []string{"b", "c"}},
		{"search no match", func() (Page, error) { return s.Search(ctx, col, "teapot", 0, 10) }, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, err := tc.run()
			require.NoError(t, err)
			require.Equal(t, tc.total, page.Total)
			var ids []string
			for _, d := range page.Documents {
				ids = append(ids, d.ID)
			}
			require.Equal(t, tc.ids, ids)
		})
	}

	got, err := s.Get(ctx, col, "b")
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"Blue Widget","tags":["sale"]}`, string(got.Data))
	require.True(t, got.UpdatedAt.Equal(time.Unix(1700000000, 0)))

	require.NoError(t, s.Put(ctx, col, doc("b", `{"name":"replaced"}`)))
	got, err = s.Get(ctx, col, "b")
	require.NoError(t, err)
	require.JSONEq(t, `{"name":"replaced"}`, string(got.Data))

	require.NoError(t, s.Delete(ctx, col, "b"))
	require.ErrorIs(t, s.Delete(ctx, col, "b"), ErrNotFound)
	_, err = s.Get(ctx, col, "b")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.Check(ctx))
}

func TestMemoryStore(t *testing.T) { testContract(t, NewMemory()) }

func TestElasticStoreAgainstStandIn(t *testing.T) {
	standIn, srv := startStandIn(t)
	es, err := NewElastic(ElasticConfig{Addresses: []string{srv.URL}, Timeout: 5 * time.Second})
	require.NoError(t, err)
	testContract(t, es)

	calls := strings.Join(standIn.callLog(), "\n")
	require.Contains(t, calls, "PUT /companion-things?", "index created with its mapping")
	require.Contains(t, calls, "POST /companion-things/_bulk?refresh=wait_for", "PutMany uses _bulk")
	require.Contains(t, calls, "PUT /companion-things/_doc/b?refresh=wait_for")
}

func TestElasticStoreErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{
			name: "server error is reported with its status",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Elastic-Product", "Elasticsearch")
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, `{"error":{"type":"boom"}}`)
			},
			want: "status 500",
		},
		{
			name: "a server that is not Elasticsearch is refused",
			handler: func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, `{}`)
			},
			want: "not Elasticsearch",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.handler)
			es, err := NewElastic(ElasticConfig{Addresses: []string{srv}, Timeout: 2 * time.Second})
			require.NoError(t, err)
			_, err = es.Get(context.Background(), "things", "a")
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestElasticRealCluster runs the same contract against a real cluster when
// ELASTICSEARCH_URL names one, in indices named for this run that it
// deletes afterwards.
func TestElasticRealCluster(t *testing.T) {
	url := os.Getenv("ELASTICSEARCH_URL")
	if url == "" {
		t.Skip("ELASTICSEARCH_URL is not set: no real Elasticsearch cluster to test against")
	}
	prefix := fmt.Sprintf("companion-test-%d-", time.Now().UnixNano())
	es, err := NewElastic(ElasticConfig{
		Addresses:   strings.Split(url, ","),
		Username:    os.Getenv("ELASTICSEARCH_USERNAME"),
		Password:    os.Getenv("ELASTICSEARCH_PASSWORD"),
		APIKey:      os.Getenv("ELASTICSEARCH_API_KEY"),
		IndexPrefix: prefix,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		res, err := es.es.Indices.Delete([]string{prefix + "things"})
		if err == nil {
			res.Body.Close()
		}
	})
	testContract(t, es)
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"collection ok", ValidCollection("orders-2024")},
		{"id ok", ValidID("Ab.9_x-1")},
		{"object ok", ValidData(json.RawMessage(`{"a":1}`))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { require.NoError(t, tc.err) })
	}
	bad := []struct {
		name string
		err  error
	}{
		{"collection upper case", ValidCollection("Orders")},
		{"collection path", ValidCollection("../x")},
		{"collection starts with a dash", ValidCollection("-x")},
		{"collection too long", ValidCollection(strings.Repeat("a", 65))},
		{"empty id", ValidID("")},
		{"id starts with a dot", ValidID(".hidden")},
		{"id with slash", ValidID("a/b")},
		{"id too long", ValidID(strings.Repeat("a", 129))},
		{"array body", ValidData(json.RawMessage(`[1]`))},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) { require.ErrorIs(t, tc.err, ErrInvalid) })
	}
}
