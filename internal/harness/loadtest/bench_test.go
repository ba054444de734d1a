package loadtest

import (
	"context"
	"testing"
	"time"
)

// BenchmarkOpenLoop20k sends 20,000 plain requests per second for two
// seconds per iteration to a trivial HTTP server in this process (trivialServer), and
// reports what the tool achieved: the rate actually sent, the p99 lag of
// sends behind their schedule (the tool's own overhead) and the errors.
//
//	go test -run '^$' -bench OpenLoop20k -benchtime 1x ./internal/harness/loadtest
func BenchmarkOpenLoop20k(b *testing.B) {
	url := trivialServer(b)
	const rate = 20000
	for b.Loop() {
		rep, err := Run(context.Background(), Options{
			Plan:   Plan{Name: "bench", Duration: 2 * time.Second, TotalRate: rate, Mix: Mix{KindPlain: 1}},
			Target: Target{Edges: map[string]string{"local": url}},
		})
		if err != nil {
			b.Fatal(err)
		}
		total := rep.Regions[0].Total
		var errs int64
		for _, n := range total.Errors {
			errs += n
		}
		b.ReportMetric(rep.Overhead.AchievedRPS, "sent-rps")
		b.ReportMetric(float64(total.OK)/rep.DurationS, "ok-rps")
		b.ReportMetric(rep.Overhead.ScheduleLag.P99, "lag-p99-ms")
		b.ReportMetric(total.Latency.P99, "latency-p99-ms")
		b.ReportMetric(float64(errs), "errors")
	}
}

// BenchmarkIssuerMint is the cost of minting an ES256 token, which is why
// the dev issuer reuses one for a minute instead of minting per request.
func BenchmarkIssuerMint(b *testing.B) {
	iss, err := NewIssuer()
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	for b.Loop() {
		iss.token = "" // force a mint
		if _, err := iss.Token(); err != nil {
			b.Fatal(err)
		}
	}
}
