package server

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

func TestEdgeRequestLimits(t *testing.T) {
	long := strings.Repeat("x", 2000)
	for _, tc := range []struct {
		name string
		req  any
		want string // "" means accepted
	}{
		{"ack", &pb.AckRequest{Edge: "e1", Region: "us-east", RejectReason: "bad cell"}, ""},
		{"no edge", &pb.AckRequest{Region: "us-east"}, "edge: edge is required"},
		{"edge with a newline", &pb.WatchRequest{Edge: "e1\nadmin", Region: "us-east"}, "edge: "},
		{"region not a label", &pb.ReportOutcomesRequest{Edge: "e1", Region: "US East"}, "region: "},
		{"long reason", &pb.AckRequest{Edge: "e1", RejectReason: long}, "reject_reason: 2000 bytes; at most 1024"},
		{"long probe detail", &pb.ReportProbeRequest{Edge: "e1", Endpoint: "a", Detail: long}, "detail: 2000 bytes; at most 256"},
		{"bad endpoint", &pb.ReportOutcomesRequest{Edge: "e1", Outcomes: []*pb.EndpointOutcomes{{Endpoint: "a b"}}}, "outcomes[0].endpoint: "},
		{"long check detail", &pb.ReportHealthRequest{Edge: "e1", Checks: []*pb.EndpointChecks{{Endpoint: "a", Results: []*pb.CheckResult{{Detail: long}}}}}, "checks[0].results[0].detail"},
		{"too many results", &pb.ReportHealthRequest{Edge: "e1", Checks: []*pb.EndpointChecks{{Endpoint: "a", Results: make([]*pb.CheckResult, 65)}}}, "65 results for one endpoint; at most 64"},
		{"nonces", &pb.CheckNoncesRequest{Edge: "e1"}, ""},
	} {
		err := checkEdgeRequest(tc.req)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v; want it accepted", tc.name, err)
		case tc.want != "" && (status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want InvalidArgument naming %q", tc.name, err, tc.want)
		}
	}
}
