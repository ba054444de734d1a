package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// usageError is a mistake in the command line or its input files: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitCode is 2 for usage errors and 1 for everything else: refusals and failures.
func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// describeError turns an error into the one line printed after "edgecell: ".
// A gRPC status reads "<code in words>: <message>", so the server's explanation
// (which names the offending field) is what the user sees.
func (a *app) describeError(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		// grpc's own dial failures; a coordinator's UNAVAILABLE (no leader, a
		// forward that failed) carries its own explanation.
		if strings.HasPrefix(msg, "connection error") || strings.HasPrefix(msg, "last connection error") {
			return fmt.Sprintf("unavailable: cannot reach a coordinator at %s (%s); set --addr or $%s to a running one",
				a.addr, shortDialError(msg), addrEnv)
		}
	case codes.DeadlineExceeded:
		if strings.Contains(msg, "context deadline exceeded") {
			return fmt.Sprintf("deadline exceeded: no answer from %s within %s (raise --timeout?)", a.addr, a.timeout)
		}
	}
	return codeWords(st.Code()) + ": " + msg
}

// codeWords spells a gRPC code the way people say it: InvalidArgument -> "invalid argument".
func codeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte(' ')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// shortDialError keeps the tail of grpc's nested dial error ("connect: connection refused").
func shortDialError(msg string) string {
	msg = strings.TrimRight(msg, `"`)
	if i := strings.LastIndex(msg, "dial "); i >= 0 {
		msg = msg[i:]
	}
	return msg
}
