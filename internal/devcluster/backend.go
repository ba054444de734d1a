package devcluster

import (
	"encoding/json"
	"io"
	"net/http"
)

// Backend is one demo upstream of the dev cluster.
type Backend struct {
	// ID is the endpoint id the sample config gives it: "<region>-<n>".
	ID     string
	Region string
	// Addr is its host:port; URL is "http://" + Addr.
	Addr string
	URL  string
}

// BackendReply is the JSON body a demo backend answers every request with.
type BackendReply struct {
	Endpoint   string `json:"endpoint"`
	Region     string `json:"region"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	Query      string `json:"query,omitempty"`
	RoutingKey string `json:"routing_key"`
	// BodyBytes is how many request body bytes it read, so a load test can check
	// that bodies are streamed through whole.
	BodyBytes int64 `json:"body_bytes"`
}

// NewBackendHandler answers every request with 200 and a BackendReply naming
// endpoint id and region, after reading the whole request body.
func NewBackendHandler(id, region string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		reply := BackendReply{
			Endpoint: id, Region: region, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			RoutingKey: r.Header.Get("X-Routing-Key"), BodyBytes: n,
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(reply)
	})
}
