package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/edgecell/edgecell/edgenode"
	"github.com/edgecell/edgecell/edgenode/tlsterm"
)

// edgeHTTPS holds the edge's client TLS flags (--tls-cert, --tls-key,
// --tls-listen), apart from the coordinator mTLS ones (--cacert, --cert, --key).
type edgeHTTPS struct {
	certs, keys []string
}

// edgeTLSFlags adds the client TLS flags to the edge command; apply loads
// the certificates into cfg once the logger exists.
func edgeTLSFlags(cmd *cobra.Command, cfg *edgenode.Config) *edgeHTTPS {
	h := &edgeHTTPS{}
	f := cmd.Flags()
	f.StringArrayVar(&h.certs, "tls-cert", nil, "PEM certificate (chain) the proxy serves HTTPS with; repeat with --tls-key for several, chosen by SNI (the first is the default); re-read when the file changes")
	f.StringArrayVar(&h.keys, "tls-key", nil, "PEM private key of the --tls-cert in the same position")
	f.StringVar(&cfg.TLSListen, "tls-listen", "", "HTTPS listen address of the proxy, next to --listen's HTTP (empty, with --tls-cert: --listen serves HTTPS)")
	return h
}

// apply checks the flags and loads the pairs into cfg.HTTPS.
func (h *edgeHTTPS) apply(cfg *edgenode.Config, log *slog.Logger) error {
	if len(h.certs) != len(h.keys) {
		return usagef("--tls-cert and --tls-key come in pairs: got %d certificates and %d keys", len(h.certs), len(h.keys))
	}
	if len(h.certs) == 0 {
		if cfg.TLSListen != "" {
			return usagef("--tls-listen needs --tls-cert and --tls-key")
		}
		return nil
	}
	pairs := make([]tlsterm.Pair, len(h.certs))
	for i := range h.certs {
		pairs[i] = tlsterm.Pair{Cert: h.certs[i], Key: h.keys[i]}
	}
	certs, err := tlsterm.New(pairs, log)
	if err != nil {
		return usagef("%v", err)
	}
	cfg.HTTPS = certs
	if cfg.TLSListen == "" {
		log.Info("serving HTTPS on --listen (no --tls-listen)", "listen", cfg.Listen)
	}
	return nil
}
