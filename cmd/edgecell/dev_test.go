package main

import (
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDevPrintsCommandsThatWork runs `edgecell dev` on free ports and follows
// its printed instructions: every curl line for tenant-1 is served in the region
// it names, and the CLI lines answer.
func TestDevPrintsCommandsThatWork(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--grpc-base-port=0", "--raft-base-port=0", "--http-base-port=0", "--backend-base-port=0"},
			streams{in: strings.NewReader(""), out: out, err: out}, func(string) string { return "" })
	}()
	deadline := time.Now().Add(e2eDeadline)
	for !strings.Contains(out.String(), "Ctrl-C stops") {
		select {
		case code := <-done:
			t.Fatalf("edgecell dev exited with %d:\n%s", code, out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("edgecell dev did not come up:\n%s", out)
		}
	}
	summary := out.String()

	curls := regexp.MustCompile(`curl -s -H 'X-Routing-Key: (\S+)' (\S+)\s+# cell-1, served in (\S+)`).FindAllStringSubmatch(summary, -1)
	if len(curls) != 3 {
		t.Fatalf("want a tenant-1 curl line per region:\n%s", summary)
	}
	for _, m := range curls {
		key, url, region := m[1], m[2], m[3]
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Routing-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", m[0], err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("X-Edge-Endpoint"); resp.StatusCode != http.StatusOK || !strings.HasSuffix(got, "@"+region) {
			t.Errorf("%s: status %d, X-Edge-Endpoint %q; want served in %s", m[0], resp.StatusCode, got, region)
		}
	}

	cliLines := regexp.MustCompile(`edgecell --addr (\S+) (cluster status|edges)\n`).FindAllStringSubmatch(summary, -1)
	if len(cliLines) != 2 {
		t.Fatalf("want the cluster status and edges lines, with --addr for free ports:\n%s", summary)
	}
	// The CLI works with what the summary exports, and without it is refused.
	env := map[string]string{}
	for _, m := range regexp.MustCompile(`export (EDGECELL_\w+)=(\S+)\n`).FindAllStringSubmatch(summary, -1) {
		env[m[1]] = m[2]
	}
	if len(env) != 3 || !strings.HasSuffix(env[certEnv], filepath.Join("tls", "admin.pem")) {
		t.Fatalf("want export lines for the CA, the admin's certificate and key:\n%s", summary)
	}
	for _, m := range cliLines {
		env[addrEnv] = m[1]
		if r := cliWith(t, env, "", strings.Fields(m[2])...); r.code != 0 || !strings.Contains(r.out, "us-east") {
			t.Errorf("%s: %+v", strings.TrimSpace(m[0]), r)
		}
	}

	plain := cliWith(t, map[string]string{addrEnv: cliLines[0][1]}, "", "cluster", "status")
	if plain.code != 2 || !strings.Contains(plain.err, "--insecure") {
		t.Errorf("cluster status without certificates: %+v; want a usage error naming --cacert, --cert, --key and --insecure", plain)
	}
	insecure := cliWith(t, map[string]string{addrEnv: cliLines[0][1]}, "", "--insecure", "cluster", "status")
	if insecure.code == 0 {
		t.Errorf("a plaintext client of the TLS cluster was served: %+v", insecure)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("edgecell dev exited with %d after Ctrl-C:\n%s", code, out)
		}
	case <-time.After(e2eDeadline):
		t.Fatal("edgecell dev did not stop after its context ended")
	}
}
