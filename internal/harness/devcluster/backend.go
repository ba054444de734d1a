package devcluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
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

// backendServer runs one demo backend and lets tests stop, restart and
// fail its health check.
type backendServer struct {
	handler   http.Handler
	unhealthy atomic.Bool

	mu   sync.Mutex
	addr string
	srv  *http.Server // nil while stopped
}

// listen serves on addr (host:0 picks a port) and returns the bound address.
func (b *backendServer) listen(addr string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return b.addr, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	b.addr = ln.Addr().String()
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	return b.addr, nil
}

func (b *backendServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" && b.unhealthy.Load() {
		http.Error(w, "unhealthy (devcluster SetBackendHealthy)", http.StatusServiceUnavailable)
		return
	}
	b.handler.ServeHTTP(w, r)
}

// stop closes the listener and every connection: the address refuses
// connections until listen is called again.
func (b *backendServer) stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return nil
	}
	err := b.srv.Close()
	b.srv = nil
	return err
}

func (c *Cluster) backend(id string) (*backendServer, error) {
	b, ok := c.servers[id]
	if !ok {
		return nil, fmt.Errorf("devcluster: no backend %q (ids are <region>-1..%d)", id, BackendsPerRegion)
	}
	return b, nil
}

// StopBackend kills backend id: its address refuses connections and open
// connections are cut, as when its process dies. Stopping a stopped backend
// does nothing.
func (c *Cluster) StopBackend(id string) error {
	b, err := c.backend(id)
	if err != nil {
		return err
	}
	return b.stop()
}

// StartBackend brings a stopped backend back on the same address.
func (c *Cluster) StartBackend(id string) error {
	b, err := c.backend(id)
	if err != nil {
		return err
	}
	b.mu.Lock()
	addr := b.addr
	b.mu.Unlock()
	if _, err := b.listen(addr); err != nil {
		return fmt.Errorf("devcluster: restart backend %s on %s: %w", id, addr, err)
	}
	return nil
}

// SetBackendHealthy makes backend id's GET /healthz answer 200 (true) or
// 503 (false), for active health checks; other paths are served as usual.
func (c *Cluster) SetBackendHealthy(id string, healthy bool) error {
	b, err := c.backend(id)
	if err != nil {
		return err
	}
	b.unhealthy.Store(!healthy)
	return nil
}
