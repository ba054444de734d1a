//go:build fault

package fault

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// The routing config of a run: cells cell-00..cell-19, each with one
// endpoint per region (the backend's listener of that region); the last two
// require HMAC. Register keys start in cell-00 and are moved among the plain
// cells by the write workload; plain and auth keys stay where they are.
var (
	plainCells   = cellIDs(0, 18)
	authCells    = cellIDs(18, 20)
	registerKeys = []string{"reg-0", "reg-1", "reg-2", "reg-3", "reg-4"}
	plainKeys    = []string{"plain-0", "plain-1", "plain-2", "plain-3", "plain-4", "plain-5"}
	authKeys     = []string{"auth-0", "auth-1", "auth-2", "auth-3"}
)

// initialCell is where every register key starts.
const initialCell = "cell-00"

func cellIDs(from, to int) []string {
	var ids []string
	for i := from; i < to; i++ {
		ids = append(ids, fmt.Sprintf("cell-%02d", i))
	}
	return ids
}

// backend is the upstream of every endpoint: one listener per region in the
// test process, recording each signed request that reaches it (the nonce
// the client sent, passed through, and the key id the edge vouches for).
type backend struct {
	rec  *recorder
	urls map[string]string // region -> base URL
	srvs []*http.Server
}

func startBackend(rec *recorder) (*backend, error) {
	b := &backend{rec: rec, urls: map[string]string{}}
	for _, region := range regions {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.close()
			return nil, err
		}
		srv := &http.Server{Handler: b.handler(region), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		b.srvs = append(b.srvs, srv)
		b.urls[region] = "http://" + ln.Addr().String()
	}
	return b, nil
}

func (b *backend) handler(region string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if nonce := r.Header.Get("X-Nonce"); nonce != "" {
			b.rec.hit(Hit{KeyID: r.Header.Get("X-Edge-Key-Id"), Nonce: nonce, Endpoint: region, At: b.rec.now()})
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok " + region + "\n"))
	})
}

func (b *backend) close() {
	for _, s := range b.srvs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.Shutdown(ctx)
		cancel()
	}
}

// routingConfig is the config a run applies.
func (b *backend) routingConfig() *pb.RoutingConfig {
	cfg := &pb.RoutingConfig{}
	for _, r := range regions {
		cfg.Regions = append(cfg.Regions, &pb.Region{Name: r})
	}
	cfg.Latencies = []*pb.Latency{
		{From: "us-east", To: "eu-west", OneWayMs: 38},
		{From: "us-east", To: "ap-south", OneWayMs: 110},
		{From: "eu-west", To: "ap-south", OneWayMs: 60},
	}
	for _, id := range append(append([]string(nil), plainCells...), authCells...) {
		cell := &pb.Cell{Id: id}
		for _, r := range regions {
			cell.Endpoints = append(cell.Endpoints, &pb.Endpoint{Id: id + "-" + r, Url: b.urls[r], Region: r})
		}
		cfg.Cells = append(cfg.Cells, cell)
	}
	for _, id := range authCells {
		for _, cell := range cfg.Cells {
			if cell.Id == id {
				cell.Auth = &pb.AuthPolicy{Mode: pb.AuthMode_AUTH_MODE_HMAC}
			}
		}
	}
	for _, k := range registerKeys {
		cfg.Placements = append(cfg.Placements, &pb.Placement{Key: k, Cell: initialCell})
	}
	for i, k := range plainKeys {
		cfg.Placements = append(cfg.Placements, &pb.Placement{Key: k, Cell: plainCells[i%len(plainCells)]})
	}
	for i, k := range authKeys {
		cfg.Placements = append(cfg.Placements, &pb.Placement{Key: k, Cell: authCells[i%len(authCells)]})
	}
	return cfg
}
