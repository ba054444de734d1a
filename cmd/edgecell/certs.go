package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgecell/edgecell/internal/pki"
)

// certsCommand groups the certificate verbs. They read and write files
// only; no coordinator is involved.
func (a *app) certsCommand() *cobra.Command {
	cmd := groupCommand("certs", "Create the cluster CA and issue certificates")
	cmd.Long = `Every coordinator, edge and operator proves who it is with a certificate from
the cluster CA, and edgecell authorizes by the identity in it:

  spiffe://edgecell/coordinator/<name>     a coordinator member
  spiffe://edgecell/edge/<region>/<name>   an edge node of a region
  spiffe://edgecell/admin/<name>           an operator who may change the config
  spiffe://edgecell/viewer/<name>          an operator who may read it

'certs init' creates the CA once; 'certs issue' signs a key pair for one
identity. Give each holder ca.pem, its certificate and its key (--cacert,
--cert, --key); ca-key.pem stays where certificates are issued.`
	cmd.Example = `  edgecell certs init --dir ./certs
  edgecell certs issue --dir ./certs --role coordinator --name c1 --host c1.internal
  edgecell certs issue --dir ./certs --role edge --region us-east --name e1
  edgecell certs issue --dir ./certs --role admin --name alice`
	cmd.AddCommand(a.certsInitCommand(), a.certsIssueCommand(), a.certsBootstrapCommand())
	return cmd
}

func (a *app) certsInitCommand() *cobra.Command {
	var (
		dir  string
		days int
	)
	cmd := &cobra.Command{
		Use:   "init --dir DIR [--days N]",
		Short: "Create the cluster CA: DIR/ca.pem and DIR/ca-key.pem",
		Long: `Init creates a certificate authority (ECDSA P-256) in DIR: ca.pem, which every
node and client trusts, and ca-key.pem (mode 0600), which only 'certs issue'
reads. It refuses to replace an existing CA: every certificate the old one
issued would stop being trusted.`,
		Example: `  edgecell certs init --dir ./certs`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			lifetime, err := daysLifetime(days)
			if err != nil {
				return err
			}
			ca, err := pki.InitCA(dir, lifetime, a.now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.out, "created the cluster CA, valid until %s\n"+
				"wrote %s (the CA certificate: every node and client trusts it, --cacert)\n"+
				"wrote %s (its private key, mode 0600: only 'edgecell certs issue' needs it; keep it off the nodes)\n",
				ca.Cert.NotAfter.UTC().Format(time.RFC3339), filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile))
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the CA's files, created if missing (required)")
	cmd.Flags().IntVar(&days, "days", int(pki.DefaultCALifetime/day), "how many days the CA is valid")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func (a *app) certsIssueCommand() *cobra.Command {
	var (
		dir, role, name, region, out string
		hosts                        []string
		days                         int
		force                        bool
	)
	cmd := &cobra.Command{
		Use:   "issue --dir DIR --role ROLE --name NAME [--region REGION] [--host HOST ...]",
		Short: "Issue a key pair for one identity with the CA in DIR",
		Long: `Issue signs a new key pair (ECDSA P-256) with the CA in DIR and writes
DIR/<out>.pem and DIR/<out>-key.pem (mode 0600); --out defaults to --name.
ROLE is coordinator, edge (which needs --region), admin or viewer.

Coordinators and edges serve as well as connect: their certificates are for
server and client auth and name localhost, 127.0.0.1 and ::1 besides each
--host, for clients that check host names (edgecell's own check the identity).
Admins and viewers get a client certificate only.

Existing files are replaced only with --force; a running node picks up a
replaced pair for the same identity within a second.`,
		Example: `  edgecell certs issue --dir ./certs --role coordinator --name c1 --host c1.internal --host 10.0.0.7
  edgecell certs issue --dir ./certs --role edge --region us-east --name e1 --days 90
  edgecell certs issue --dir ./certs --role admin --name alice --out alice-2026 --force`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			id, err := issueIdentity(role, name, region)
			if err != nil {
				return err
			}
			if len(hosts) > 0 && id.Role != pki.RoleCoordinator && id.Role != pki.RoleEdge {
				return usagef("--host is for coordinators and edges, which serve; %s certificate is for connecting only", pki.RoleList(id.Role))
			}
			if out == "" {
				out = name
			}
			if err := checkBase(out); err != nil {
				return err
			}
			lifetime, err := daysLifetime(days)
			if err != nil {
				return err
			}
			ca, err := pki.LoadCA(dir)
			if err != nil {
				return err
			}
			certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{Identity: id, Hosts: hosts, Lifetime: lifetime, Now: a.now()})
			if err != nil {
				return err
			}
			certPath, keyPath, err := pki.WriteKeyPair(dir, out, certPEM, keyPEM, force)
			if err != nil {
				return err
			}
			return a.printIssued(id, certPEM, filepath.Join(dir, pki.CACertFile), certPath, keyPath)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory of the CA ('certs init'), where the key pair is written (required)")
	f.StringVar(&role, "role", "", "coordinator, edge, admin or viewer (required)")
	f.StringVar(&name, "name", "", "the holder's name: a member or edge id, an operator's name (required)")
	f.StringVar(&region, "region", "", "the edge's region (edges only, required for them)")
	f.StringSliceVar(&hosts, "host", nil, "DNS name or IP address of a coordinator or edge, for clients that check host names (repeatable)")
	f.IntVar(&days, "days", int(pki.DefaultCertLifetime/day), "how many days the certificate is valid")
	f.StringVar(&out, "out", "", "base name of the files: DIR/<out>.pem and DIR/<out>-key.pem (default: --name)")
	f.BoolVar(&force, "force", false, "replace existing files")
	for _, req := range []string{"dir", "role", "name"} {
		cmd.MarkFlagRequired(req)
	}
	return cmd
}

// issueIdentity is the identity the flags name, or a usage error that
// names the flag to fix.
func issueIdentity(role, name, region string) (pki.Identity, error) {
	r, err := pki.ParseRole(role)
	if err != nil {
		return pki.Identity{}, usagef("--role: %v", err)
	}
	if r == pki.RoleEdge && region == "" {
		return pki.Identity{}, usagef("an edge certificate needs --region, the region the edge serves (e.g. us-east)")
	}
	id := pki.Identity{Role: r, Name: name, Region: region}
	if err := id.Validate(); err != nil {
		return pki.Identity{}, usagef("%v", err)
	}
	return id, nil
}

// checkBase refuses an --out that is not a plain file name, or that would
// write over the CA's own files.
func checkBase(base string) error {
	if base == "." || base == ".." || strings.ContainsAny(base, `/\`) {
		return usagef("--out %q: want a file name without a directory (the files go in --dir)", base)
	}
	if base+".pem" == pki.CACertFile {
		return usagef("%s.pem and %s-key.pem would write over the CA's own files; choose another --out", base, base)
	}
	return nil
}

const day = 24 * time.Hour

// maxDays keeps a lifetime far from time.Duration's limit (292 years).
const maxDays = 100 * 365

// daysLifetime is --days as a lifetime.
func daysLifetime(days int) (time.Duration, error) {
	if days < 1 || days > maxDays {
		return 0, usagef("--days %d: want 1 to %d", days, maxDays)
	}
	return time.Duration(days) * day, nil
}

// printIssued reports the files written and what the certificate says.
func (a *app) printIssued(id pki.Identity, certPEM []byte, caPath, certPath, keyPath string) error {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return fmt.Errorf("the issued certificate is not PEM")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("the issued certificate does not parse: %w", err)
	}
	w := a.out
	fmt.Fprintf(w, "issued %s, valid until %s\n", id, leaf.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "wrote %s (the certificate)\n", certPath)
	fmt.Fprintf(w, "wrote %s (its private key, mode 0600)\n", keyPath)
	hosts := leaf.DNSNames
	for _, ip := range leaf.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	if len(hosts) > 0 {
		fmt.Fprintf(w, "hosts: %s\n", strings.Join(hosts, ", "))
	}
	_, err = fmt.Fprintf(w, "use: --cacert %s --cert %s --key %s\n", caPath, certPath, keyPath)
	return err
}
