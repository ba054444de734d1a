package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/edgecell/edgecell/edgenode/route"
	"github.com/edgecell/edgecell/hmacsig"
)

// rawUpstream is a minimal keep-alive HTTP/1.1 server answering every
// request with a fixed small body, so that the benchmark measures the proxy
// rather than the upstream.
func rawUpstream(tb testing.TB) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n")
	return serveRaw(tb, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			// Read a head (no bodies in this benchmark).
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// rawClient sends GETs with a routing key on one keep-alive connection.
type rawClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func newRawClient(tb testing.TB, addr, key string) *rawClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	return &rawClient{c: c, br: bufio.NewReader(c),
		req: []byte("GET /bench HTTP/1.1\r\nHost: edge\r\nUser-Agent: bench\r\nX-Routing-Key: " + key + "\r\n\r\n")}
}

func (rc *rawClient) do() (int, error) {
	if _, err := rc.c.Write(rc.req); err != nil {
		return 0, err
	}
	status := 0
	length := -1
	for first := true; ; first = false {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if first {
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("content-length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if _, err := rc.br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

func BenchmarkProxy(b *testing.B) {
	up := rawUpstream(b)
	tb := buildTable(b, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	h := startProxy(b, tb, nil)
	runClients(b, h.addr, "acme", nil)
}

// runClients sends b.N GETs with routing key key through the proxy at addr
// from 16 parallel keep-alive connections, each expected to get 200. Before
// each request, next (when not nil) may replace its bytes.
func runClients(b *testing.B, addr, key string, next func() []byte) {
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		rc := newRawClient(b, addr, key)
		defer rc.c.Close()
		for pb.Next() {
			if next != nil {
				rc.req = next()
			}
			status, err := rc.do()
			if err != nil || status != 200 {
				b.Errorf("status %d err %v", status, err)
				return
			}
		}
	})
}

// BenchmarkDirect is the same load straight to the upstream: the proxy's cost
// is the difference.
func BenchmarkDirect(b *testing.B) {
	up := rawUpstream(b)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		rc := newRawClient(b, up[len("http://"):], "acme")
		defer rc.c.Close()
		for pb.Next() {
			if _, err := rc.do(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkProxySigned is BenchmarkProxy for a cell that requires HMAC
// signatures: every request is signed (with its own nonce) and checked,
// against a nonce store in memory (the coordinators' RPC is not measured).
func BenchmarkProxySigned(b *testing.B) {
	up := rawUpstream(b)
	st := authTestState(up, "http://127.0.0.1:1/jwks", "http://127.0.0.1:1/jwks")
	tb, err := route.Build("us-east", st)
	if err != nil {
		b.Fatal(err)
	}
	h := startProxy(b, tb, func(c *Config) { c.Nonces = &memNonces{seen: map[string]int64{}} })
	signer := &hmacsig.Signer{KeyID: "k_live", Secret: liveSecret}
	reqs := make([][]byte, b.N)
	for i := range reqs {
		r, _ := http.NewRequest("GET", "http://edge/bench", nil)
		r.Header.Set("X-Routing-Key", "signed")
		if err := signer.Sign(r); err != nil {
			b.Fatal(err)
		}
		reqs[i] = fmt.Appendf(nil, "GET /bench HTTP/1.1\r\nHost: edge\r\nX-Routing-Key: signed\r\nX-Key-Id: k_live\r\nX-Timestamp: %s\r\nX-Nonce: %s\r\nX-Signature: %s\r\n\r\n",
			r.Header.Get("X-Timestamp"), r.Header.Get("X-Nonce"), r.Header.Get("X-Signature"))
	}
	var n atomic.Int64
	b.ResetTimer()
	runClients(b, h.addr, "signed", func() []byte { return reqs[n.Add(1)-1] })
}
