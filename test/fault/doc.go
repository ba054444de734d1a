//go:build fault

// Package fault is edgecell's fault suite: a harness above the product that
// runs the real binary as processes on loopback (three coordinators, three
// edges in us-east, eu-west and ap-south, a recording backend in the test
// process), drives a seeded nemesis against them while workloads run, records
// every operation clients made (call and return time, outcome), and checks
// the recorded history with pure functions:
//
//   - config writes and linearizable reads of each placement key behave as a
//     linearizable register (porcupine);
//   - no nonce reaches the backend twice and no (key, nonce) gets two 2xx;
//   - every acknowledged write is readable at the end;
//   - every process is running at the end, none exited by itself, none
//     logged a panic;
//   - plain requests through a live edge never fail (static stability).
//
// It owns the harness (process control, failpoints, workloads, recorder)
// and the checkers; product packages never import it. Every file carries
// the build tag "fault", so `go test ./...` skips it:
//
//	make fault                    # a few fixed seeds and one random seed
//	make fault FAULT_SEED=123     # replay one seed's schedule
//	make soak SOAK_RUNS=50        # fifty random seeds, one line each, a total
//
// A failed run prints its seed and the violated rules and keeps its data
// dirs and logs in $TMPDIR/edgecell-fault-<seed>.
package fault
