package edgenode

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// rssEnv makes the test binary act as a bare edge that loads a cache and
// reports its memory (see TestMain): the figure is then the edge's own,
// not the test process's.
const rssEnv = "EDGENODE_RSS_DATADIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(rssEnv); dir != "" {
		os.Exit(reportRSS(dir))
	}
	os.Exit(m.Run())
}

// reportRSS starts an edge from the cache in dir with no coordinator and
// prints its resident set size once it serves, and again after a collection.
func reportRSS(dir string) int {
	n, err := Start(context.Background(), Config{Name: "rss", Region: "us-east", DataDir: dir,
		Listen: "127.0.0.1:0", Coordinators: []string{"127.0.0.1:1"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer n.Close()
	serving := vmRSS()
	runtime.GC()
	debug.FreeOSMemory()
	fmt.Printf("placements=%d rss_serving_kb=%d rss_after_gc_kb=%d\n", n.table.Load().Placements(), serving, vmRSS())
	return 0
}

func vmRSS() int {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	return 0
}

// BenchmarkRSS100kPlacements reports the memory of an edge serving 100,000
// placements (over 100 cells of 3 endpoints), measured in a fresh process.
func BenchmarkRSS100kPlacements(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc to read VmRSS")
	}
	dir := b.TempDir()
	st := &pb.State{Revision: 1, Config: &pb.RoutingConfig{
		Latencies: []*pb.Latency{{From: "us-east", To: "eu-west", OneWayMs: 40}, {From: "us-east", To: "ap-south", OneWayMs: 90}},
	}}
	for c := range 100 {
		cell := &pb.Cell{Id: fmt.Sprintf("cell-%03d", c)}
		for i, region := range []string{"us-east", "eu-west", "ap-south"} {
			cell.Endpoints = append(cell.Endpoints, &pb.Endpoint{Id: fmt.Sprintf("c%03d-e%d", c, i),
				Url: fmt.Sprintf("http://10.0.%d.%d:8080", c, i), Region: region})
		}
		st.Config.Cells = append(st.Config.Cells, cell)
	}
	for i := range 100_000 {
		st.Config.Placements = append(st.Config.Placements, &pb.Placement{Key: fmt.Sprintf("tenant-%07d", i), Cell: fmt.Sprintf("cell-%03d", i%100)})
	}
	writeCache(b, dir, st)
	var serving, afterGC float64
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("edge process: %v\n%s", err, out)
		}
		var placements, s, g int
		if _, err := fmt.Sscanf(string(bytes.TrimSpace(out)), "placements=%d rss_serving_kb=%d rss_after_gc_kb=%d", &placements, &s, &g); err != nil || placements != 100_000 {
			b.Fatalf("edge process said %q (%v)", out, err)
		}
		serving, afterGC = float64(s)/1024, float64(g)/1024
	}
	b.ReportMetric(serving, "MB-rss-serving")
	b.ReportMetric(afterGC, "MB-rss-after-gc")
}
