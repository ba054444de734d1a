package edgenode_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
	"github.com/edgecell/edgecell/internal/harness/devcluster"
	"github.com/edgecell/edgecell/internal/testutil"
)

// BenchmarkDeathToNoTraffic measures, with default breaker settings, how
// long after a backend dies the last new request (or connection attempt)
// from any of the three edges reaches it, while every edge keeps sending
// traffic to its cell. Each iteration kills the backend, waits until every
// edge holds its breaker open, then brings it back and resets the breaker.
//
//   - connection-refused: the backend's process is gone (its port refuses);
//     each edge trips locally after its own connection failures.
//   - http-503: the backend answers every request 503; only the replicated
//     breaker (fed by the edges' outcome reports) stops the traffic.
//
// Run with a fixed count, for example -benchtime 20x; it reports p50, p99
// and max in milliseconds.
func BenchmarkDeathToNoTraffic(b *testing.B) {
	for _, mode := range []string{"connection-refused", "http-503"} {
		b.Run(mode, func(b *testing.B) { benchDeath(b, mode) })
	}
}

func benchDeath(b *testing.B, mode string) {
	var (
		failing   atomic.Bool
		deathAt   atomic.Int64 // unix nanos; 0 while alive
		lastHit   atomic.Int64 // latest request or dial reaching it after deathAt
		victimURL string
	)
	noteHit := func() {
		if deathAt.Load() == 0 {
			return
		}
		now := time.Now().UnixNano()
		for {
			old := lastHit.Load()
			if now <= old || lastHit.CompareAndSwap(old, now) {
				return
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := devcluster.Start(ctx, devcluster.Options{
		WrapBackend: func(id string, h http.Handler) http.Handler {
			if id != "us-east-1" {
				return h
			}
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.UserAgent(), "edgecell-probe/") {
					h.ServeHTTP(w, r) // probes say the backend is up again
					return
				}
				noteHit()
				if failing.Load() {
					http.Error(w, "dying", http.StatusServiceUnavailable)
					return
				}
				h.ServeHTTP(w, r)
			})
		},
		// Every dial the edges make to the victim counts as reaching it.
		EdgeDialer: func(string) func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := &net.Dialer{}
			return func(ctx context.Context, network, addr string) (net.Conn, error) {
				if "http://"+addr == victimURL {
					noteHit()
				}
				return d.DialContext(ctx, network, addr)
			}
		},
		Config: func(bs []devcluster.Backend) *pb.RoutingConfig {
			cfg := devcluster.SampleConfig(bs)
			url := map[string]string{}
			for _, be := range bs {
				url[be.ID] = be.URL
			}
			victimURL = url["us-east-1"]
			cfg.Cells = []*pb.Cell{{Id: "cell-us", Endpoints: []*pb.Endpoint{
				{Id: "us-east-1", Url: url["us-east-1"], Region: "us-east"},
				{Id: "us-east-2", Url: url["us-east-2"], Region: "us-east"},
			}}}
			cfg.Placements = nil
			cfg.DefaultCell = "cell-us"
			return cfg
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	admin, err := c.Admin("n1")
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	send := func(ctx context.Context, region string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.EdgeURL(region)+"/", nil)
		req.Header.Set("X-Routing-Key", "k")
		resp, err := client.Do(req)
		if err != nil {
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Edge-Endpoint")
	}

	var samples []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for _, region := range devcluster.Regions() {
			testutil.Poll(b, region+" edge served by us-east-1", func() bool {
				_, ep := send(ctx, region)
				return ep == "us-east-1@us-east"
			})
		}
		lctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, region := range devcluster.Regions() {
			for range 4 {
				wg.Go(func() {
					for lctx.Err() == nil {
						send(lctx, region)
					}
				})
			}
		}
		b.StartTimer()

		lastHit.Store(0)
		start := time.Now()
		deathAt.Store(start.UnixNano())
		if mode == "connection-refused" {
			if err := c.StopBackend("us-east-1"); err != nil {
				b.Fatal(err)
			}
		} else {
			failing.Store(true)
		}
		testutil.Eventually(b, 30*time.Second, func() error {
			for _, e := range c.Edges() {
				if br, _, _ := e.EndpointStatus("us-east-1"); br.GetState() != pb.BreakerState_BREAKER_STATE_OPEN &&
					br.GetState() != pb.BreakerState_BREAKER_STATE_HALF_OPEN {
					return errNotYet(e.Region())
				}
			}
			return nil
		})
		stop()
		wg.Wait()
		last := lastHit.Load()
		deathAt.Store(0)
		if last == 0 {
			last = start.UnixNano()
		}
		samples = append(samples, time.Duration(last-start.UnixNano()))

		b.StopTimer()
		if mode == "connection-refused" {
			if err := c.StartBackend("us-east-1"); err != nil {
				b.Fatal(err)
			}
		}
		failing.Store(false)
		if _, err := admin.ResetBreaker(ctx, &pb.ResetBreakerRequest{Endpoint: "us-east-1"}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportQuantiles(b, samples)
}

type errNotYet string

func (e errNotYet) Error() string { return "breaker not yet open at the " + string(e) + " edge" }

// reportQuantiles reports the p50, p99 and max of samples in milliseconds.
func reportQuantiles(b *testing.B, samples []time.Duration) {
	slices.Sort(samples)
	q := func(p float64) float64 {
		return float64(samples[min(len(samples)-1, int(p*float64(len(samples))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
