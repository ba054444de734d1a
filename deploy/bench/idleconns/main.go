// Command idleconns opens many client connections to a proxy and holds them
// open, for the idle-connection memory benchmark (deploy/bench/idle.sh).
//
// In -mode idle every connection first sends one complete request (GET /
// with an X-Routing-Key header) and reads its 200 response whole, and then
// sends nothing more: a keep-alive connection between requests. In -mode
// silent the connections send nothing at all. Once all -n are open it
// prints a line starting "ready"; it then holds them until its standard
// input closes or -hold passes, checks that the server has closed none of
// them (a line starting "held"), closes them and exits: status 0 when all
// were still open, 3 when the server had closed some.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18182", "address to connect to")
	n := flag.Int("n", 10000, "connections to open")
	key := flag.String("key", "bench", "X-Routing-Key of the request each connection sends (-mode idle)")
	mode := flag.String("mode", "idle", "idle: one request and its response, then nothing; silent: send nothing")
	hold := flag.Duration("hold", 10*time.Minute, "hold the connections at most this long (until standard input closes otherwise)")
	concurrency := flag.Int("concurrency", 64, "connections being opened at once")
	timeout := flag.Duration("timeout", 10*time.Second, "bound on opening one connection (and on its response, -mode idle)")
	flag.Parse()
	if *mode != "idle" && *mode != "silent" {
		fmt.Fprintf(os.Stderr, "idleconns: -mode %q: want idle or silent\n", *mode)
		os.Exit(2)
	}
	if *n < 1 || *concurrency < 1 {
		fmt.Fprintln(os.Stderr, "idleconns: -n and -concurrency must be positive")
		os.Exit(2)
	}
	if err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns: raising RLIMIT_NOFILE:", err)
		os.Exit(1)
	}

	start := time.Now()
	conns, err := open(*addr, *n, *concurrency, *timeout, *mode, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		os.Exit(1)
	}
	fmt.Printf("ready n=%d mode=%s addr=%s in=%s\n", len(conns), *mode, *addr, time.Since(start).Round(time.Millisecond))

	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stdinClosed:
	case <-time.After(*hold):
	}

	alive, closed, unexpected := check(conns)
	fmt.Printf("held open=%d closed_by_server=%d sent_data=%d\n", alive, closed, unexpected)
	for _, c := range conns {
		c.Close()
	}
	if alive != len(conns) {
		os.Exit(3)
	}
}

// raiseFileLimit raises the soft limit on open files to the hard limit.
// (The Go runtime does so too at start; this does not depend on it.)
func raiseFileLimit() error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur >= rl.Max {
		return nil
	}
	rl.Cur = rl.Max
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}

// open opens n connections to addr, concurrency at a time, each made ready
// for mode; on an error it returns the first one with the connections
// opened so far (nil where none is).
func open(addr string, n, concurrency int, timeout time.Duration, mode, key string) ([]net.Conn, error) {
	req := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nX-Routing-Key: " + key + "\r\nUser-Agent: idleconns\r\n\r\n")
	conns := make([]net.Conn, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: timeout}
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil && mode == "idle" {
					err = exchange(c, req, timeout)
				}
				if err != nil {
					if c != nil {
						c.Close()
					}
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d of %d: %w", i+1, n, err); cancel() })
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	return conns, firstErr
}

// exchange sends req on c and reads the response whole, which must be a
// 200 that keeps the connection open, then clears c's deadline.
func exchange(c net.Conn, req []byte, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(req); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d, want 200", resp.StatusCode)
	case resp.Close:
		return errors.New("the response closes the connection")
	case br.Buffered() > 0:
		return fmt.Errorf("%d bytes after the response", br.Buffered())
	}
	return c.SetDeadline(time.Time{})
}

// check peeks at every connection without blocking: one with nothing to
// read is still open; one at EOF or in error was closed by the server; one
// with bytes to read got something it should not have.
func check(conns []net.Conn) (open, closed, unexpected int) {
	buf := make([]byte, 1)
	for _, c := range conns {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			closed++
			continue
		}
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			return true // never wait: EAGAIN is the answer sought
		}); err != nil {
			rerr = err
		}
		switch {
		case errors.Is(rerr, syscall.EAGAIN):
			open++
		case rerr == nil && n > 0:
			unexpected++
		default: // EOF (n == 0) or a reset
			closed++
		}
	}
	return open, closed, unexpected
}
