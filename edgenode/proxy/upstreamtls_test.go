package proxy

import (
	"bufio"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/edgecell/edgecell/edgenode/route"
	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// TestPerCellUpstreamCA: a cell's https endpoints are verified against the
// cell's CA (and server name) when it has upstream_tls, against the edge's
// default roots otherwise; connections of cells that verify differently
// are never shared.
func TestPerCellUpstreamCA(t *testing.T) {
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") }))
	be.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	be.StartTLS()
	t.Cleanup(be.Close)
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: be.Certificate().Raw}))
	// httptest's certificate is for example.com and 127.0.0.1.
	cell := func(id, eid string, up *pb.UpstreamTLS) *pb.Cell {
		return &pb.Cell{Id: id, Endpoints: []*pb.Endpoint{{Id: eid, Url: be.URL, Region: "us-east"}}, UpstreamTls: up}
	}
	st := &pb.State{Revision: 1, Config: &pb.RoutingConfig{
		Cells: []*pb.Cell{
			cell("private", "p1", &pb.UpstreamTLS{CaPem: ca}),
			cell("named", "n1", &pb.UpstreamTLS{CaPem: ca, ServerName: "example.com"}),
			cell("misnamed", "m1", &pb.UpstreamTLS{CaPem: ca, ServerName: "other.example"}),
			cell("default", "d1", nil),
		},
		Placements: []*pb.Placement{{Key: "private", Cell: "private"}, {Key: "named", Cell: "named"}, {Key: "misnamed", Cell: "misnamed"}, {Key: "default", Cell: "default"}},
	}}
	tb, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, tb, nil)
	c := client(t)
	// The order matters: a pooled connection of "private" must not serve "default".
	for _, tc := range []struct {
		key    string
		status int
	}{{"private", 200}, {"default", 502}, {"named", 200}, {"misnamed", 502}, {"private", 200}} {
		resp, body := h.get(t, c, tc.key, "/")
		if resp.StatusCode != tc.status || (tc.status == 200 && body != "secret") {
			t.Errorf("%s: %d %q, want %d", tc.key, resp.StatusCode, body, tc.status)
		}
	}
}

// TestPerCellUpgrades: a cell's allowed_upgrades pass to its endpoints
// without the edge allowing them for every cell; another cell's requests
// asking for the same protocol go as plain requests.
func TestPerCellUpgrades(t *testing.T) {
	be := echoUpgrades(t, "echo")
	st := &pb.State{Revision: 1, Config: &pb.RoutingConfig{
		Cells: []*pb.Cell{
			{Id: "echoes", Endpoints: []*pb.Endpoint{{Id: "e1", Url: be.URL, Region: "us-east"}}, AllowedUpgrades: []string{"Echo"}},
			{Id: "plain", Endpoints: []*pb.Endpoint{{Id: "p1", Url: be.URL, Region: "us-east"}}},
		},
		Placements: []*pb.Placement{{Key: "echoes", Cell: "echoes"}, {Key: "plain", Cell: "plain"}},
	}}
	tb, err := route.Build("us-east", st)
	if err != nil {
		t.Fatal(err)
	}
	h := startProxy(t, tb, nil)
	for _, tc := range []struct {
		key    string
		status int
	}{{"echoes", 101}, {"plain", 200}} {
		c := dialRaw(t, h.addr)
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nX-Routing-Key: "+tc.key+"\r\nConnection: Upgrade\r\nUpgrade: echo/2, other\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != tc.status {
			t.Fatalf("%s: %v %v, want %d", tc.key, resp, err, tc.status)
		}
		if tc.status == 101 {
			io.WriteString(c, "ping\n")
			if got, _ := br.ReadString('\n'); got != "ping\n" {
				t.Fatalf("echo: %q", got)
			}
		} else if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), "plain") {
			t.Fatalf("%s: %q", tc.key, b)
		}
	}
}
