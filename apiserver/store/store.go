// Package store holds companion-api's documents: JSON objects kept in named
// collections. Memory is the embedded store; Elastic keeps them in
// Elasticsearch, one index per collection.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrNotFound is returned when a document does not exist.
var ErrNotFound = errors.New("document not found")

// ErrInvalid wraps errors caused by the caller's input: a bad collection
// name, id, or body. They are never worth retrying.
var ErrInvalid = errors.New("invalid input")

// Document is one stored JSON object.
type Document struct {
	ID        string          `json:"id"`
	Data      json.RawMessage `json:"data"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Page is one page of a list or search.
type Page struct {
	Documents []Document `json:"documents"`
	// Total is how many documents match in all pages.
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
}

// Store is what companion-api needs from a document store. Every method
// honors ctx's deadline.
type Store interface {
	// Get returns the document or ErrNotFound.
	Get(ctx context.Context, collection, id string) (Document, error)
	// Put creates or replaces the document.
	Put(ctx context.Context, collection string, doc Document) error
	// PutMany creates or replaces several documents in one call.
	PutMany(ctx context.Context, collection string, docs []Document) error
	// Delete removes the document, or returns ErrNotFound.
	Delete(ctx context.Context, collection, id string) error
	// List returns documents ordered by id.
	List(ctx context.Context, collection string, offset, limit int) (Page, error)
	// Search returns documents whose text contains every word of query,
	// ordered by id.
	Search(ctx context.Context, collection, query string, offset, limit int) (Page, error)
	// Check reports whether the store can serve.
	Check(ctx context.Context) error
	// Kind names the store in /health ("embedded", "elasticsearch").
	Kind() string
}

// validName reports whether s is 1 to max bytes, starts with a letter or
// digit, and holds only letters (lowercase only unless upper), digits and
// the bytes in extra. It runs on every request, so it avoids regexp.
func validName(s string, max int, upper bool, extra string) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case upper && c >= 'A' && c <= 'Z':
		case i > 0 && strings.IndexByte(extra, c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ValidCollection checks a collection name: lowercase letters, digits, '-'
// and '_', at most 64, starting with a letter or digit. The rule keeps
// names valid as Elasticsearch index names.
func ValidCollection(name string) error {
	if !validName(name, 64, false, "_-") {
		return fmt.Errorf("collection %q: want 1-64 of [a-z0-9_-]: %w", name, ErrInvalid)
	}
	return nil
}

// ValidID checks a document id: letters, digits, '.', '-' and '_', at most
// 128, starting with a letter or digit.
func ValidID(id string) error {
	if !validName(id, 128, true, "._-") {
		return fmt.Errorf("document id %q: want 1-128 of [A-Za-z0-9._-]: %w", id, ErrInvalid)
	}
	return nil
}

// ValidData checks that data is one JSON object.
func ValidData(data json.RawMessage) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("document body is not valid UTF-8: %w", ErrInvalid)
	}
	var obj map[string]json.RawMessage
	// json.Unmarshal turns null into a nil map without error: refuse it.
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return fmt.Errorf("document body must be a JSON object: %w", ErrInvalid)
	}
	return nil
}

// Text returns the words of every string value in data, lowercased and
// joined by spaces; it is what Search matches against.
func Text(data json.RawMessage) string {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return ""
	}
	var words []string
	collectText(v, &words)
	return strings.Join(words, " ")
}

func collectText(v any, words *[]string) {
	switch x := v.(type) {
	case string:
		*words = append(*words, Words(x)...)
	case []any:
		for _, e := range x {
			collectText(e, words)
		}
	case map[string]any:
		for _, e := range x {
			collectText(e, words)
		}
	}
}

// Words splits s into lowercase words of letters and digits.
func Words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}
