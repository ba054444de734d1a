package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/edgecell/edgecell/internal/configfile"
)

// show prints msg as JSON or YAML when -o asks for it, else calls table to write
// rows for people; tab-separated columns are aligned.
func (a *app) show(msg proto.Message, table func(w io.Writer)) error {
	if a.output == "json" || a.output == "yaml" {
		b, err := configfile.EncodeMessage(msg, configfile.Format(a.output))
		if err != nil {
			return err
		}
		_, err = a.out.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// showWrite prints the outcome of a write: "<done> at revision N" for people, the
// response for scripts.
func (a *app) showWrite(resp proto.Message, done string, revision uint64) error {
	return a.show(resp, func(w io.Writer) {
		fmt.Fprintf(w, "%s at revision %d\n", done, revision)
	})
}

// row writes one tab-separated table row.
func row(w io.Writer, cols ...any) {
	for i, c := range cols {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	io.WriteString(w, "\n")
}

// ago renders a unix-millisecond instant relative to now ("3s ago"); "-" for never.
func ago(now time.Time, unixMs int64) string {
	if unixMs == 0 {
		return "-"
	}
	d := now.Sub(time.UnixMilli(unixMs))
	if d < 0 {
		d = 0
	}
	return d.Round(100*time.Millisecond).String() + " ago"
}

// orDash renders an empty string or zero as "-" so table columns never collapse.
func orDash[T comparable](v T) string {
	var zero T
	if v == zero {
		return "-"
	}
	switch x := any(v).(type) {
	case string:
		return x
	case uint64:
		return strconv.FormatUint(x, 10)
	}
	return fmt.Sprint(v)
}
