package apiserver_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDocumentBodies refuses every body that is not one JSON object of
// valid UTF-8, and answers 413 for one over the limit.
func TestDocumentBodies(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBodyBytes = 1024
	r := startReplica(t, cfg)
	url := r.URL + "/v1/collections/shop/documents/d1"
	cases := []struct {
		name string
		body string
		code int
		msg  string
	}{
		{"object", `{"a":1}`, 200, `"id":"d1"`},
		{"null", `null`, 400, "must be a JSON object"},
		{"array", `[1]`, 400, "must be a JSON object"},
		{"trailing object", `{"a":1}{"b":2}`, 400, "data after the JSON object"},
		{"trailing garbage", `{"a":1} garbage`, 400, "data after the JSON object"},
		{"invalid UTF-8", "{\"a\":\"\xff\xfe\"}", 400, "not valid UTF-8"},
		{"too large", `{"a":"` + strings.Repeat("x", 2000) + `"}`, 413, "larger than 1024 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, "PUT", url, tc.body)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.msg)
		})
	}
}

// TestSlowBodiesHoldNoWorker opens more slow uploads than there are
// workers: reads still get a worker, because a body is read in full before
// the request takes one.
func TestSlowBodiesHoldNoWorker(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 2
	r := startReplica(t, cfg)
	code, body := call(t, "PUT", r.URL+"/v1/collections/shop/documents/w1", `{"a":1}`)
	require.Equal(t, 200, code, body)

	addr := strings.TrimPrefix(r.URL, "http://")
	for i := range 4 {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		_, err = fmt.Fprintf(conn, "PUT /v1/collections/shop/documents/s%d HTTP/1.1\r\n"+
			"Host: x\r\nContent-Length: 1000\r\n\r\n{", i)
		require.NoError(t, err)
	}
	time.Sleep(200 * time.Millisecond) // the slow requests are in the server now
	for range 5 {
		code, body := call(t, "GET", r.URL+"/v1/collections/shop/documents/w1", "")
		require.Equal(t, 200, code, body)
	}
}
