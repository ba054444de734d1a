package loadtest

import (
	"bufio"
	"bytes"
	"net"
	"testing"
)

// trivialServer is the cheapest HTTP/1.1 server that keeps connections
// alive: it answers every bodiless request with a fixed 200, without
// net/http's parsing, so that a benchmark measures the load tool rather
// than a server sharing its two cores. It returns the base URL.
func trivialServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	response := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				r := bufio.NewReaderSize(conn, 4096)
				for {
					// Headers end with an empty line; requests carry no body.
					for {
						line, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(bytes.TrimSpace(line)) == 0 {
							break
						}
					}
					if _, err := conn.Write(response); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}
