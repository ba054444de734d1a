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

// keyCommand groups the API key verbs.
func (a *app) keyCommand() *cobra.Command {
	cmd := groupCommand("key", "Create, list, rotate and revoke API keys")
	cmd.AddCommand(a.keyCreateCommand(), a.keyListCommand(), a.keyRevokeCommand(), a.keyRotateCommand())
	return cmd
}

func (a *app) keyCreateCommand() *cobra.Command {
	var (
		name  string
		cells []string
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [--cells a,b]",
		Short: "Create an API key and print its secret (shown this once)",
		Long: `Create draws a key id and a secret on the coordinators and prints both. The
secret is never shown again: 'key list' shows only ids and names. Clients sign
requests with it (see 'edgecell request' and the README's "Signing requests").
With --cells the key may reach only those cells; without, every cell.`,
		Example: `  edgecell key create --name billing --cells cell-1,cell-2`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c pb.AdminServiceClient) error {
				resp, err := c.CreateKey(ctx, &pb.CreateKeyRequest{Name: name, Cells: cells})
				if err != nil {
					return err
				}
				return a.show(resp, func(w io.Writer) { a.printKeySecret(w, "created", resp.GetKey(), resp.GetRevision()) })
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a name for operators (required)")
	cmd.Flags().StringSliceVar(&cells, "cells", nil, "cells the key may reach (default: every cell)")
	cmd.MarkFlagRequired("name")
	return cmd
}

// printKeySecret prints a key with its newest secret, once.
func (a *app) printKeySecret(w io.Writer, what string, k *pb.ApiKey, rev uint64) {
	fmt.Fprintf(w, "%s key %s (%s) at revision %d\n", what, k.GetId(), k.GetName(), rev)
	fmt.Fprintf(w, "key id: %s\nsecret: %s\n", k.GetId(), k.GetSecrets()[0].GetSecret())
	for _, s := range k.GetSecrets()[1:] {
		fmt.Fprintf(w, "the previous secret stays valid until %s\n", time.UnixMilli(s.GetNotAfterUnixMs()).UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(w, "store the secret now: it is not shown again")
}

func (a *app) keyListCommand() *cobra.Command {
	var consistency consistencyFlag
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API keys (without secrets)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return read(a, cmd, func(ctx context.Context, c pb.AdminServiceClient, opt grpc.CallOption) (*pb.ListKeysResponse, error) {
				return c.ListKeys(ctx, &pb.ListKeysRequest{Consistency: consistency.level()}, opt)
			}, a.keyTable)
		},
	}
	addConsistencyFlag(cmd, &consistency)
	return cmd
}

func (a *app) keyTable(w io.Writer, resp *pb.ListKeysResponse) {
	now := a.now()
	row(w, "ID", "NAME", "CELLS", "STATE", "SECRETS", "CREATED", "REVISION")
	for _, k := range resp.GetKeys() {
		state := "active"
		switch {
		case k.GetRevoked():
			state = "revoked " + ago(now, k.GetRevokedUnixMs())
		case k.GetRotationEndsUnixMs() != 0:
			state = "rotating, old secret ends " + until(now, k.GetRotationEndsUnixMs())
		}
		cells := "*"
		if len(k.GetCells()) > 0 {
			cells = strings.Join(k.GetCells(), ",")
		}
		row(w, k.GetId(), k.GetName(), cells, state, k.GetSecrets(), ago(now, k.GetCreatedUnixMs()), k.GetModRevision())
	}
}

func (a *app) keyRevokeCommand() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key; --wait returns once every edge refuses it",
		Long: `Revoke drops the key's secrets. Every edge refuses the key as soon as it has
applied the revoking revision; with --wait the command returns only once every
connected edge has (the receipt), or fails at --timeout.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			done := fmt.Sprintf("revoked key %s", args[0])
			if wait {
				done += "; every connected edge refuses it"
			}
			return a.write(cmd, done, func(ctx context.Context, c pb.AdminServiceClient) (revisioned, error) {
				resp, err := c.RevokeKey(ctx, &pb.RevokeKeyRequest{Id: args[0]})
				if err == nil && wait {
					err = a.waitForEdges(ctx, c, resp.GetRevision())
				}
				return resp, err
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait (up to --timeout) until every connected edge has applied the revocation")
	return cmd
}

func (a *app) keyRotateCommand() *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "rotate ID [--grace 1h]",
		Short: "Give an API key a new secret (shown once); old ones stay valid for --grace",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if grace < 0 || grace%time.Second != 0 {
				return usagef("--grace %s: give whole seconds, 0 or more", grace)
			}
			return a.call(cmd, func(ctx context.Context, c pb.AdminServiceClient) error {
				resp, err := c.RotateKey(ctx, &pb.RotateKeyRequest{Id: args[0], GraceSeconds: uint32(grace / time.Second)})
				if err != nil {
					return err
				}
				return a.show(resp, func(w io.Writer) { a.printKeySecret(w, "rotated", resp.GetKey(), resp.GetRevision()) })
			})
		},
	}
	cmd.Flags().DurationVar(&grace, "grace", 0, "how long the previous secrets stay valid (0: they stop at once)")
	return cmd
}
