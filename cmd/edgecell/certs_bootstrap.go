package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgecell/edgecell/internal/pki"
)

// certsBootstrapCommand creates what a whole deployment needs in one
// idempotent run: the compose deployment's image has no shell to script
// 'certs init' and one 'certs issue' per node.
func (a *app) certsBootstrapCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "bootstrap --dir DIR IDENTITY[=HOST,...] ...",
		Short: "Create the CA if DIR has none and a key pair for each identity that has none",
		Long: `Bootstrap makes DIR hold the cluster CA and a key pair for every identity
given, creating only what is missing: the CA unless ca.pem exists, and
DIR/<name>.pem and DIR/<name>-key.pem unless they hold a valid certificate of
that CA for that identity (valid for more than a day). Run again, it changes
nothing, so a deployment may run it at every start.

An IDENTITY is role/name, or edge/region/name; =HOST,... adds DNS names or
addresses to a coordinator's or edge's certificate.`,
		Example: `  edgecell certs bootstrap --dir /tls coordinator/n1=n1 coordinator/n2=n2 coordinator/n3=n3 \
    edge/us-east/edge-us-east admin/admin`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("%s needs at least one identity, e.g. coordinator/n1", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(_ *cobra.Command, args []string) error {
			type want struct {
				id    pki.Identity
				hosts []string
			}
			var wants []want
			seen := map[string]bool{}
			for _, arg := range args {
				id, hosts, err := parseBootstrapSpec(arg)
				if err != nil {
					return err
				}
				if err := checkBase(id.Name); err != nil {
					return err
				}
				if seen[id.Name] {
					return usagef("%q: the name %s is given twice (each holder's files are named after it)", arg, id.Name)
				}
				seen[id.Name] = true
				wants = append(wants, want{id, hosts})
			}
			d := pki.Dir(dir)
			ca, err := d.EnsureCA(a.now())
			if err != nil {
				return err
			}
			for _, w := range wants {
				f, err := d.Ensure(ca, w.id.Name, w.id, w.hosts, a.now())
				if err != nil {
					return fmt.Errorf("%s: %w", w.id, err)
				}
				fmt.Fprintf(a.out, "%s: %s, %s\n", w.id, f.Cert, f.Key)
			}
			_, err = fmt.Fprintf(a.out, "CA: %s\n", filepath.Join(dir, pki.CACertFile))
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory of the CA and the key pairs, created if missing (required)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

// parseBootstrapSpec parses role/name, edge/region/name, with =host,... .
func parseBootstrapSpec(s string) (pki.Identity, []string, error) {
	spec, hostList, _ := strings.Cut(s, "=")
	var hosts []string
	for _, h := range strings.Split(hostList, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	parts := strings.Split(spec, "/")
	var id pki.Identity
	var err error
	switch {
	case len(parts) == 3 && parts[0] == string(pki.RoleEdge):
		id, err = issueIdentity(parts[0], parts[2], parts[1])
	case len(parts) == 2 && parts[0] != string(pki.RoleEdge):
		id, err = issueIdentity(parts[0], parts[1], "")
	default:
		return pki.Identity{}, nil, usagef("%q: want role/name, or edge/region/name, optionally =host,...", s)
	}
	if err != nil {
		return pki.Identity{}, nil, usagef("%q: %v", s, err)
	}
	if len(hosts) > 0 && id.Role != pki.RoleCoordinator && id.Role != pki.RoleEdge {
		return pki.Identity{}, nil, usagef("%q: hosts are for coordinators and edges, which serve", s)
	}
	return id, hosts, nil
}
