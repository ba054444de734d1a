// Command edgecell is the one edgecell binary. It runs the services
// (`edgecell coordinator`, `edgecell edge`, `edgecell dev` for a local
// three-region cluster) and is the admin client of the coordinators' gRPC API
// (`apply`, `get config`, `cell`, `placement`, `edges`, `cluster`).
//
// Exit status: 0 on success, 1 when the cluster refused or failed the request
// (the gRPC status is printed as "edgecell: <code>: <message>"), 2 for a usage
// error (a bad flag or argument, an unreadable or malformed file).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr}, os.Getenv)
	stop()
	os.Exit(code)
}
