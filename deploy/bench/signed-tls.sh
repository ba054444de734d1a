#!/usr/bin/env bash
# Signed traffic with mutual TLS against the same without it, real processes,
# same run: three coordinator processes, one edge process and one demo
# backend on loopback, `edgecell loadtest --edges` sending HMAC-signed POSTs
# with fresh nonces (every request is a nonce check through the edge's gRPC
# connection to the coordinators). Each round starts a fresh cluster in each
# mode, alternating, and prints the rate served, errors and p50/p99 latency
# of each; the last line gives the tls/insecure ratios of the medians.
#
# Run by `make bench-signed-tls` (from the repository root, after make build).
# Everything it starts is stopped and everything it writes is removed when it
# ends, however it ends.
#
# Settings (environment): RATE (2000 requests/s, open loop), DURATION (15s),
# ROUNDS (2), PORT_BASE (17400).
set -euo pipefail

RATE=${RATE:-2000}
DURATION=${DURATION:-15s}
ROUNDS=${ROUNDS:-2}
PORT_BASE=${PORT_BASE:-17400}
BIN=${BIN:-./bin/edgecell}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ -x "$BIN" ] || { echo "$BIN not built: run make build" >&2; exit 2; }

G1=$((PORT_BASE + 1)) G2=$((PORT_BASE + 2)) G3=$((PORT_BASE + 3))
R1=$((PORT_BASE + 11)) R2=$((PORT_BASE + 12)) R3=$((PORT_BASE + 13))
EDGE=$((PORT_BASE + 20)) BACKEND=$((PORT_BASE + 30))
IC="n1=127.0.0.1:$R1,n2=127.0.0.1:$R2,n3=127.0.0.1:$R3"

cat >"$WORK/routing.yaml" <<EOF
regions: [{name: us-east}]
cells:
  - id: cell-signed
    auth: {mode: AUTH_MODE_HMAC}
    endpoints: [{id: be-1, url: "http://127.0.0.1:$BACKEND", region: us-east}]
placements: [{key: signed-1, cell: cell-signed}]
EOF

"$BIN" certs bootstrap --dir "$WORK/tls" coordinator/n1=127.0.0.1 coordinator/n2=127.0.0.1 \
	coordinator/n3=127.0.0.1 edge/us-east/edge-1 admin/admin >/dev/null

# tlsflags NAME: the flags that give a process NAME's certificate, or --insecure.
tlsflags() {
	if [ "$MODE" = insecure ]; then echo --insecure; return; fi
	echo --cacert "$WORK/tls/ca.pem" --cert "$WORK/tls/$1.pem" --key "$WORK/tls/$1-key.pem"
}

wait_for() { # what command...
	local what=$1 i
	shift
	for i in $(seq 1 200); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	echo "$what not ready after 20 s; logs in $WORK" >&2
	exit 1
}

edge_refuses_unsigned() {
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Routing-Key: signed-1" "http://127.0.0.1:$EDGE/")" = 401 ]
}

stop_all() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	PIDS=()
}

# round MODE N: a fresh cluster in MODE, one loadtest, its summary in $WORK/MODE-N.json.
round() {
	MODE=$1
	local n=$2 d="$WORK/$1-$2" i
	mkdir -p "$d"
	"$BIN" demo-backend --id be-1 --region us-east --listen "127.0.0.1:$BACKEND" >"$d/backend.log" 2>&1 &
	PIDS+=($!)
	for i in 1 2 3; do
		local g=$((PORT_BASE + i)) r=$((PORT_BASE + 10 + i))
		# shellcheck disable=SC2046
		"$BIN" coordinator --name "n$i" --region us-east --data-dir "$d/n$i" \
			--grpc-addr "127.0.0.1:$g" --raft-addr "127.0.0.1:$r" --initial-cluster "$IC" \
			$(tlsflags "n$i") >"$d/n$i.log" 2>&1 &
		PIDS+=($!)
	done
	# shellcheck disable=SC2046
	local admin=(--addr "127.0.0.1:$G1" $(tlsflags admin))
	wait_for "the cluster" "$BIN" "${admin[@]}" apply -f "$WORK/routing.yaml"
	# shellcheck disable=SC2046
	"$BIN" edge --name edge-1 --region us-east --data-dir "$d/edge" --listen "127.0.0.1:$EDGE" \
		--coordinators "127.0.0.1:$G1,127.0.0.1:$G2,127.0.0.1:$G3" $(tlsflags edge-1) >"$d/edge.log" 2>&1 &
	PIDS+=($!)
	# An unsigned request gets 401 once the edge has the config (503 before).
	wait_for "the edge" edge_refuses_unsigned
	"$BIN" "${admin[@]}" loadtest --edges "us-east=http://127.0.0.1:$EDGE" --mix signed=1 \
		--rate "$RATE" --duration "$DURATION" --json "$WORK/$MODE-$n.json" >"$d/loadtest.log" 2>&1 || {
		echo "loadtest ($MODE, round $n) failed:" >&2
		tail -20 "$d/loadtest.log" >&2
		exit 1
	}
	stop_all
}

for n in $(seq 1 "$ROUNDS"); do
	round tls "$n"
	round insecure "$n"
done

python3 - "$WORK" "$ROUNDS" <<'EOF'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for mode in ("tls", "insecure"):
    p50s, p99s, rps = [], [], []
    for n in range(1, rounds + 1):
        d = json.load(open(f"{work}/{mode}-{n}.json"))
        t = d["regions"][0]["total"]
        errs = t["requests"] - t["ok"]
        print(f"{mode:9} round {n}: {t['rps']:.0f} requests/s, {errs} errors, p50 {t['latency_ms']['p50']:.2f} ms, p99 {t['latency_ms']['p99']:.2f} ms, invariants {'ok' if d['ok'] else 'BROKEN'}")
        p50s.append(t["latency_ms"]["p50"]); p99s.append(t["latency_ms"]["p99"]); rps.append(t["rps"])
    med[mode] = (statistics.median(rps), statistics.median(p50s), statistics.median(p99s))
t, i = med["tls"], med["insecure"]
print(f"tls/insecure: rate {t[0]/i[0]:.3f}, p50 {t[1]/i[1]:.3f}, p99 {t[2]/i[2]:.3f}")
EOF
