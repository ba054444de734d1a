package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	pb "github.com/edgecell/edgecell/gen/edgecell/v1"
)

// healthCommand lists the replicated health verdict of every endpoint with
// what each observing edge saw: the answer to "why did traffic move?".
func (a *app) healthCommand() *cobra.Command {
	var consistency consistencyFlag
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show each endpoint's health verdict and what every observing edge saw",
		Long: `Lists every endpoint's replicated health verdict (healthy, unhealthy, or
unknown while no majority of its observing edges has decided), since when and
why, followed by one line per observing edge: its own verdict, its current run
of passed or failed checks, when it last reported and the last check's detail.
Stale observations (an edge that stopped reporting) do not count.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.ListHealthResponse, error) {
				return c.ListHealth(ctx, &pb.ListHealthRequest{Consistency: consistency.level()}, opt)
			}, a.healthTable)
		},
	}
	addConsistencyFlag(cmd, &consistency)
	return cmd
}

func (a *app) healthTable(w io.Writer, resp *pb.ListHealthResponse) {
	now := a.now()
	row(w, "ENDPOINT", "VERDICT", "SINCE", "REASON")
	for _, e := range resp.GetEndpoints() {
		st := e.GetStatus()
		row(w, st.GetEndpoint(), verdictName(st.GetVerdict()), ago(now, st.GetSinceUnixMs()), orDash(st.GetReason()))
		for _, o := range e.GetObservations() {
			run := fmt.Sprintf("%d passed", o.GetPasses())
			if o.GetFailures() > 0 {
				run = fmt.Sprintf("%d failed", o.GetFailures())
			}
			seen := verdictName(o.GetVerdict())
			if o.GetStale() {
				seen += " (stale)"
			}
			row(w, "  "+o.GetEdge()+"@"+o.GetRegion(), seen, "reported "+ago(now, o.GetLastReportUnixMs()), run+": "+orDash(o.GetDetail()))
		}
	}
}

// breakersCommand lists the circuit breakers the coordinators hold.
func (a *app) breakersCommand() *cobra.Command {
	var consistency consistencyFlag
	cmd := &cobra.Command{
		Use:   "breakers",
		Short: "Show each endpoint's circuit breaker: state, trips, probe holder, reason",
		Long: `Lists the circuit breaker of every endpoint that has one: its state (closed,
open, half-open), how many recent trips set its ejection time, until when it is
ejected, which edge holds the half-open probe lease, and why it last changed.
Every edge routes by this same state at the same revision.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.ListBreakersResponse, error) {
				return c.ListBreakers(ctx, &pb.ListBreakersRequest{Consistency: consistency.level()}, opt)
			}, a.breakerTable)
		},
	}
	addConsistencyFlag(cmd, &consistency)
	return cmd
}

func (a *app) breakerTable(w io.Writer, resp *pb.ListBreakersResponse) {
	now := a.now()
	row(w, "ENDPOINT", "STATE", "TRIPS", "EJECTED UNTIL", "PROBE", "SINCE", "REVISION", "REASON")
	for _, b := range resp.GetBreakers() {
		ejected := "-" // the field keeps the last ejection's end; it matters only while open
		if b.GetState() == pb.BreakerState_BREAKER_STATE_OPEN {
			ejected = until(now, b.GetEjectedUntilUnixMs())
		}
		row(w, b.GetEndpoint(), breakerStateName(b.GetState()), b.GetTrips(), ejected, orDash(b.GetProbeHolder()),
			ago(now, b.GetSinceUnixMs()), orDash(b.GetModRevision()), orDash(b.GetReason()))
	}
}

// breakerCommand groups the breaker write verbs.
func (a *app) breakerCommand() *cobra.Command {
	cmd := groupCommand("breaker", "Operate circuit breakers")
	cmd.AddCommand(&cobra.Command{
		Use:   "reset ENDPOINT",
		Short: "Close an endpoint's breaker now and forget its trips",
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.write(cmd, fmt.Sprintf("reset the breaker of %q", args[0]), func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				return c.ResetBreaker(ctx, &pb.ResetBreakerRequest{Endpoint: args[0]})
			})
		},
	})
	return cmd
}

// until renders a future unix-millisecond instant relative to now ("in 4.3s");
// "-" when it has passed or is unset.
func until(now time.Time, unixMs int64) string {
	d := time.UnixMilli(unixMs).Sub(now)
	if unixMs == 0 || d <= 0 {
		return "-"
	}
	return "in " + d.Round(100*time.Millisecond).String()
}

func breakerStateName(s pb.BreakerState) string {
	if s == pb.BreakerState_BREAKER_STATE_UNSPECIFIED {
		return "closed"
	}
	return enumWord(s.String(), "BREAKER_STATE_")
}

func verdictName(v pb.HealthVerdict) string {
	if v == pb.HealthVerdict_HEALTH_VERDICT_UNSPECIFIED {
		return "unknown"
	}
	return enumWord(v.String(), "HEALTH_VERDICT_")
}

// enumWord turns BREAKER_STATE_HALF_OPEN into half-open.
func enumWord(name, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, prefix)), "_", "-")
}
