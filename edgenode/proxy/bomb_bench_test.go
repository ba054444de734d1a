package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// headerBomb is a head just under 64 KiB: thousands of fields, then a
// Connection field listing thousands of names, each of which was compared
// with every field (1.3 x 10^7 comparisons).
func headerBomb() string {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\n")
	for i := 0; b.Len() < 36<<10; i++ {
		fmt.Fprintf(&b, "x-%04d: v\r\n", i%10000)
	}
	b.WriteString("Connection: ")
	for i := 0; b.Len() < 63<<10; i++ {
		fmt.Fprintf(&b, "x-%04d,", i%10000)
	}
	b.WriteString("close\r\n\r\n")
	return b.String()
}

// BenchmarkHeaderBomb sends a 64 KiB head of about 3,350 fields and a
// Connection field listing 3,950 names, one per connection, and reads
// the answer: it measures what such a head costs the edge, whatever the
// answer is. (Self-contained, so it also runs on trees from before the
// head limits, to compare.)
func BenchmarkHeaderBomb(b *testing.B) {
	raw := []byte(headerBomb())
	up := rawUpstream(b)
	tb := buildTable(b, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + up}})
	h := startProxy(b, tb, nil)
	status := 0
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(raw); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		status = resp.StatusCode
		c.Close()
	}
	b.ReportMetric(float64(status), "status")
}
