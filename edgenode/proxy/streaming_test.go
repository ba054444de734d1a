package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestRequestBodyIsStreamed: the backend sees the first part of an upload
// before the client has produced the rest, so the edge does not buffer it.
func TestRequestBodyIsStreamed(t *testing.T) {
	firstSeen := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil || string(buf) != "first" {
			http.Error(w, "bad start", 500)
			return
		}
		close(firstSeen)
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s+%s", buf, rest)
	}))
	defer be.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)

	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("first"))
		select {
		case <-firstSeen: // only now produce the rest
			pw.Write([]byte("second"))
			pw.Close()
		case <-time.After(10 * time.Second):
			pw.CloseWithError(fmt.Errorf("backend never saw the first bytes: the edge buffers request bodies"))
		}
	}()
	// Unknown length: sent chunked.
	if resp, body := h.do(t, client(t), "POST", "acme", "/upload", pr); resp.StatusCode != 200 || body != "got first+second" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestResponseIsStreamed: an event stream reaches the client event by event.
func TestResponseIsStreamed(t *testing.T) {
	for _, framing := range []string{"chunked", "until-close"} {
		t.Run(framing, func(t *testing.T) {
			next := make(chan struct{})
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				if framing == "until-close" {
					w.Header().Set("Connection", "close")
				}
				for i := range 3 {
					fmt.Fprintf(w, "data: %d\n\n", i)
					w.(http.Flusher).Flush()
					select {
					case <-next:
					case <-time.After(10 * time.Second):
						return
					}
				}
			}))
			defer be.Close()
			if framing == "until-close" {
				be.Config.SetKeepAlivesEnabled(false)
			}
			tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
			h := startProxy(t, tb, nil)
			resp, err := client(t).Do(h.request("GET", "acme", "/events", nil))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for i := range 3 {
				line, err := br.ReadString('\n')
				if err != nil || line != fmt.Sprintf("data: %d\n", i) {
					t.Fatalf("event %d: %q %v", i, line, err)
				}
				br.ReadString('\n')
				next <- struct{}{} // the backend sends the next event only after we saw this one
			}
		})
	}
}

// TestLargeBodiesBothWays moves 24 MiB up and 24 MiB down through the edge intact.
func TestLargeBodiesBothWays(t *testing.T) {
	const size = 24 << 20
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if r.URL.Query().Get("small") != "" {
			io.WriteString(w, "small")
			return
		}
		w.Header().Set("X-Upload-Sha", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Upload-Len", fmt.Sprint(n))
		if r.URL.Query().Get("len") == "known" {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		rng := rand.New(rand.NewPCG(7, 7))
		io.CopyN(w, readerFunc(func(p []byte) (int, error) {
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			return len(p), nil
		}), size)
	}))
	defer be.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	c := client(t)
	for _, mode := range []string{"known", "chunked"} {
		t.Run(mode, func(t *testing.T) {
			// A small exchange first, so that the large one reuses its upstream connection.
			if resp, body := h.do(t, c, "GET", "acme", "/blob?small=1", nil); resp.StatusCode != 200 || body != "small" {
				t.Fatalf("small exchange: %d %q", resp.StatusCode, body)
			}
			up := make([]byte, size)
			for i := range up {
				up[i] = byte(i * 7)
			}
			var body io.Reader = bytes.NewReader(up)
			if mode == "chunked" {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			resp, err := c.Do(h.request("PUT", "acme", "/blob?len="+mode, body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if want := fmt.Sprintf("%x", sha256.Sum256(up)); resp.Header.Get("X-Upload-Sha") != want {
				t.Fatalf("upload arrived damaged: %s bytes, sha %s", resp.Header.Get("X-Upload-Len"), resp.Header.Get("X-Upload-Sha"))
			}
			got := sha256.New()
			n, err := io.Copy(got, resp.Body)
			rng := rand.New(rand.NewPCG(7, 7))
			want := sha256.New()
			io.CopyN(want, readerFunc(func(p []byte) (int, error) {
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				return len(p), nil
			}), size)
			if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Fatalf("download: %d bytes, err %v, intact %v", n, err, bytes.Equal(got.Sum(nil), want.Sum(nil)))
			}
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestUpstreamAnswersBeforeReadingTheBody: an upstream that answers early
// (and stops reading) must not deadlock the edge; the client gets the answer.
func TestUpstreamAnswersBeforeReadingTheBody(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	defer be.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for i := 0; i < 2000; i++ { // 128 MiB if nobody stops us
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	defer pw.CloseWithError(io.ErrClosedPipe)
	if resp, _ := h.do(t, client(t), "POST", "acme", "/", pr); resp.StatusCode != 413 {
		t.Fatalf("status %d, want the upstream's 413", resp.StatusCode)
	}
}

func TestExpectContinueHeadAndKeepAlive(t *testing.T) {
	be := backend(t, "b1")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	c := dialRaw(t, h.addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /p HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue before sending the body, got %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "b1 POST /p body=5" {
		t.Fatalf("POST answered %q", b)
	}
	// HEAD: a Content-Length but no body; the connection stays usable.
	io.WriteString(c, "HEAD /h HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\n\r\n")
	resp, err = http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len("b1 HEAD /h body=0")) {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	io.WriteString(c, "GET /again HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "b1 GET /again body=0" {
		t.Fatalf("third request on the connection: %q", b)
	}
}

func TestHTTP10ClientGetsChunkedResponseDecoded(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part two")
	}))
	defer be.Close()
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, nil)
	resp, body := rawRequest(t, h.addr, "GET / HTTP/1.0\r\nX-Routing-Key: acme\r\nConnection: keep-alive\r\n\r\n")
	if body != "part one, part two" || len(resp.TransferEncoding) != 0 || !resp.Close {
		t.Fatalf("body %q, te %v, close %v", body, resp.TransferEncoding, resp.Close)
	}
}

// echoUpgrades is a backend that switches a request asking for protocol
// (its "/version" ignored) to it and echoes; any other request gets
// "plain".
func echoUpgrades(t *testing.T, protocol string) *httptest.Server {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, _, _ := strings.Cut(r.Header.Get("Upgrade"), "/"); name != protocol {
			io.WriteString(w, "plain")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+protocol+"\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo until the client closes
	}))
	t.Cleanup(be.Close)
	return be
}

func TestUpgradeIsTunnelled(t *testing.T) {
	be := echoUpgrades(t, "echo")
	tb := buildTable(t, 1, "", map[string]string{"acme": "c1"}, cellSpec{"c1", []string{"e1=" + be.URL}})
	h := startProxy(t, tb, func(c *Config) { c.AllowedUpgrades = []string{"echo"} }) // only websocket passes by default
	c := dialRaw(t, h.addr)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nX-Routing-Key: acme\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"ping\n", "pong\n"} {
		io.WriteString(c, msg)
		if got, err := br.ReadString('\n'); got != msg {
			t.Fatalf("echo %q, got %q %v", msg, got, err)
		}
	}
}
