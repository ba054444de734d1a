package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgecell/edgecell/internal/harness/devcluster"
)

// demoBackendCommand runs the dev cluster's demo upstream on its own, so that
// containers (which can pull no third-party image here) and hand-run clusters
// have something to route to.
func (a *app) demoBackendCommand() *cobra.Command {
	var id, region, listen string
	cmd := &cobra.Command{
		Use:   "demo-backend --id ID --region R --listen ADDR",
		Short: "Run a demo upstream that answers JSON naming its endpoint id and region",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			srv := &http.Server{Handler: devcluster.NewBackendHandler(id, region), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(a.err, "demo backend %s (%s) listening on %s\n", id, region, lis.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(lis) }()
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "endpoint id to report")
	f.StringVar(&region, "region", "", "region to report")
	f.StringVar(&listen, "listen", "127.0.0.1:9001", "HTTP listen address")
	cmd.MarkFlagRequired("id")
	cmd.MarkFlagRequired("region")
	return cmd
}
