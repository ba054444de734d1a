package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// A cluster rebuilt from nothing reuses the revisions of the one it
// replaces. An edge whose cached revision is ahead of the new cluster must
// notice that the cluster id changed and take the new cluster's state,
// instead of waiting forever for revisions the new cluster will only reach
// with other content. An edge pinned to the old cluster (--cluster-id)
// refuses the new one and keeps serving what it has.
func TestEdgeFollowsARebuiltClusterUnlessPinned(t *testing.T) {
	if testing.Short() {
		t.Skip("runs coordinators and edges as processes; skipped with -short")
	}
	bin := buildBinary(t)
	grpcAddr := freeAddr(t)
	startCoordinator := func(name string) *process {
		raftAddr := freeAddr(t)
		return startProcess(t, name, bin, "coordinator", "--name", "n1", "--region", "us-east",
			"--data-dir", filepath.Join(t.TempDir(), name), "--grpc-addr", grpcAddr, "--raft-addr", raftAddr,
			"--initial-cluster", "n1="+raftAddr)
	}
	config := func(endpoint, url string, fillers int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "regions: [{name: us-east}]\ncells:\n  - id: cell-1\n    endpoints:\n      - {id: %s, url: %q, region: us-east}\nplacements:\n  - {key: tenant-1, cell: cell-1}\n", endpoint, url)
		for i := range fillers {
			fmt.Fprintf(&b, "  - {key: filler-%d, cell: cell-1}\n", i)
		}
		return b.String()
	}
	clusterID := func() string {
		var st pb.ClusterStatusResponse
		eventually(t, "cluster status shows a cluster id", func() error {
			st.Reset()
			out, err := cliRun(bin, grpcAddr, "", "cluster", "status", "-o", "json")
			if err != nil {
				return err
			}
			if err := protojson.Unmarshal([]byte(out), &st); err != nil {
				return err
			}
			if st.GetClusterId() == "" {
				return fmt.Errorf("no cluster id yet: %s", out)
			}
			return nil
		})
		return st.GetClusterId()
	}

	oldBackend := httptest.NewServer(echoBackend("old", "us-east"))
	t.Cleanup(oldBackend.Close)
	newBackend := httptest.NewServer(echoBackend("new", "us-east"))
	t.Cleanup(newBackend.Close)
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	servedBy := func(url, want string) func() error {
		return func() error {
			req, _ := http.NewRequest(http.MethodGet, url+"/hello", nil)
			req.Header.Set("X-Routing-Key", "tenant-1")
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Edge-Endpoint"); resp.StatusCode != http.StatusOK || got != want+"@us-east" {
				return fmt.Errorf("status %d from endpoint %q, want 200 from %s", resp.StatusCode, got, want)
			}
			return nil
		}
	}

	old := startCoordinator("old")
	var rev uint64
	for i := range 20 { // move the old cluster's revision well past what the new one will reach
		rev = applyConfig(t, bin, grpcAddr, config("old", oldBackend.URL, i))
	}
	oldID := clusterID()

	edge := func(name string, extra ...string) (string, *process) {
		listen := freeAddr(t)
		args := append([]string{"edge", "--name", name, "--region", "us-east", "--data-dir", filepath.Join(t.TempDir(), name),
			"--listen", listen, "--coordinators", grpcAddr}, extra...)
		return "http://" + listen, startProcess(t, name, bin, args...)
	}
	followURL, _ := edge("edge-follow")
	pinnedURL, pinned := edge("edge-pinned", "--cluster-id", oldID)
	eventually(t, "edges serve the old cluster's backend", func() error {
		if err := servedBy(followURL, "old")(); err != nil {
			return err
		}
		return servedBy(pinnedURL, "old")()
	})

	// The old cluster is lost; a new one is bootstrapped at the same
	// address, with a config of its own, at a lower revision.
	old.kill(t)
	startCoordinator("new")
	newRev := applyConfig(t, bin, grpcAddr, config("new", newBackend.URL, 0))
	if newRev >= rev {
		t.Fatalf("the new cluster is at revision %d, not below the old one's %d: the test would not show anything", newRev, rev)
	}
	if newID := clusterID(); newID == oldID {
		t.Fatalf("the rebuilt cluster has the old cluster's id %q", oldID)
	}

	eventually(t, "the unpinned edge serves the new cluster's backend", servedBy(followURL, "new"))
	eventually(t, "the pinned edge refuses the new cluster", func() error {
		if !strings.Contains(pinned.out.String(), "follows only") {
			return fmt.Errorf("no refusal in its log yet")
		}
		return nil
	})
	if err := servedBy(pinnedURL, "old")(); err != nil {
		t.Fatalf("the pinned edge stopped serving its cluster's state: %v", err)
	}
}
