package proxy

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"testing"
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
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		rc := newRawClient(b, h.addr, "acme")
		defer rc.c.Close()
		for pb.Next() {
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
