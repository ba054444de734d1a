package health

import "time"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// checks turns "ffp" into fail, fail, pass.
func checks(s string) []Check {
	out := make([]Check, len(s))
	for i, c := range s {
		out[i] = Check{OK: c == 'p'}
		if c != 'p' {
			out[i].Detail = "HTTP 503"
		}
	}
	return out
}

// report is one batch, at an offset from t0.
type report struct {
	at           time.Duration
	edge, region string
	results      string
}

func (r report) apply(s *State) bool {
	return s.Report(t0.Add(r.at), Report{Edge: r.edge, Region: r.region, Checks: checks(r.results)})
}
