#!/usr/bin/env bash
# Proxy throughput, side by side: the edgecell edge against nginx, both
# reverse-proxying to the same upstream with keep-alive, both driven by wrk
# with identical settings in the same run. Prints requests per second for
# each and the ratio edge/nginx: over plain HTTP, then over HTTPS with both
# proxies terminating TLS with the same certificate (ECDSA P-256; keep-alive,
# so handshakes are a small part of the cost and record encryption the rest).
#
# Run by `make bench-proxy` (from the repository root). Installs nginx and wrk
# with apt-get when missing (needs root). Everything it starts is stopped and
# everything it writes is removed when it ends, however it ends.
#
# On a machine with two or more cores the proxy under test gets the last core
# to itself and wrk and the upstream share the others (taskset), so that both
# proxies are measured on the same single core, with nginx configured for it
# (one worker) and the edge too (Go sizes itself to its CPU affinity). PIN=0
# runs everything unpinned instead, nginx with one worker per core.
#
# Settings (environment): DURATION (10s), CONNECTIONS (64), THREADS (2),
# ROUNDS (3: the median round is reported), PORT_BASE (18180), PIN (1),
# READ_MODE (read-first, the edge's default; wait-first saves a system call
# per read at the price of rare 10 ms stalls, see edgenode/proxy/DESIGN.md),
# SCHEMES ("http https": which passes to run, in that order).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PORT_BASE=${PORT_BASE:-18180}
UPSTREAM_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
EDGE_PORT=$((PORT_BASE + 2))
NGINX_TLS_PORT=$((PORT_BASE + 3))
EDGE_TLS_PORT=$((PORT_BASE + 4))
SCHEMES=${SCHEMES:-http https}
KEY=bench
PIN=${PIN:-1}
READ_MODE=${READ_MODE:-read-first}
CORES=$(nproc)
cd "$(dirname "$0")/../.."
BENCH=bench-proxy
# shellcheck source=lib.sh
. deploy/bench/lib.sh
PLACEMENT=${PLACEMENT/the load/wrk}

install_missing nginx wrk
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_workdir

for p in "$UPSTREAM_PORT" "$NGINX_PORT" "$EDGE_PORT" "$NGINX_TLS_PORT" "$EDGE_TLS_PORT"; do
	port_free "$p" || { echo "bench-proxy: port $p is in use; set PORT_BASE" >&2; exit 1; }
done

# One certificate for both proxies' HTTPS listeners.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

write_upstream_conf "$WORK/upstream.conf" "$UPSTREAM_PORT"

# The reference: nginx as a reverse proxy with upstream keep-alive, one
# worker per core it may use, setting the same forwarding headers the edge sets.
cat >"$WORK/nginx-proxy.conf" <<EOF
worker_processes $WORKERS;
daemon off;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy.err warn;
events { worker_connections 4096; }
http {
	access_log off;
	upstream backend {
		server 127.0.0.1:$UPSTREAM_PORT;
		keepalive 1024;
	}
	server {
		listen 127.0.0.1:$NGINX_PORT backlog=4096;
		listen 127.0.0.1:$NGINX_TLS_PORT ssl backlog=4096;
		ssl_certificate $WORK/cert.pem;
		ssl_certificate_key $WORK/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_session_cache shared:SSL:10m;
		keepalive_requests 100000000;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header X-Forwarded-Host \$host;
		}
	}
}
EOF

on_load_cpus "$NGINX" -c "$WORK/upstream.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)
on_proxy_cpu "$NGINX" -c "$WORK/nginx-proxy.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)

go build -o "$WORK/edge-bench" ./deploy/bench/edge
mkdir -p "$WORK/edge-data"
on_proxy_cpu "$WORK/edge-bench" --listen "127.0.0.1:$EDGE_PORT" --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
	--tls-listen "127.0.0.1:$EDGE_TLS_PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
	--data-dir "$WORK/edge-data" --key "$KEY" --read-mode "$READ_MODE" >"$WORK/edge.out" 2>&1 &
PIDS+=($!)

wait_ready() { # url name
	for _ in $(seq 200); do
		if curl -kfsS -o /dev/null -H "X-Routing-Key: $KEY" "$1" 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "bench-proxy: $2 did not come up at $1" >&2
	cat "$WORK"/*.err "$WORK/edge.out" >&2 2>/dev/null || true
	exit 1
}
wait_ready "http://127.0.0.1:$UPSTREAM_PORT/" "upstream"
wait_ready "http://127.0.0.1:$NGINX_PORT/" "nginx"
wait_ready "http://127.0.0.1:$EDGE_PORT/" "edge"
wait_ready "https://127.0.0.1:$NGINX_TLS_PORT/" "nginx (https)"
wait_ready "https://127.0.0.1:$EDGE_TLS_PORT/" "edge (https)"
if ! curl -fsS -D - -o /dev/null -H "X-Routing-Key: $KEY" "http://127.0.0.1:$EDGE_PORT/" | grep -qi '^X-Edge-Endpoint: upstream@bench'; then
	echo "bench-proxy: the edge did not proxy to the upstream" >&2
	exit 1
fi

rps() { # url duration
	on_load_cpus wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" -H "X-Routing-Key: $KEY" "$1" |
		awk '/Requests\/sec/ {print $2} /Non-2xx|Socket errors/ {print "bench-proxy: " $0 > "/dev/stderr"}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, $CORES cores, $PLACEMENT; edge read mode $READ_MODE; upstream: nginx returning a fixed body"
summary=()
bench() { # scheme nginx-port edge-port
	local nginx_url="$1://127.0.0.1:$2/" edge_url="$1://127.0.0.1:$3/"
	echo "-- $1 (keep-alive)"
	rps "$nginx_url" 2s >/dev/null # warm up both: connections, pools, caches
	rps "$edge_url" 2s >/dev/null
	local nginx_runs=() edge_runs=() ratios=() n e r
	for round in $(seq "$ROUNDS"); do
		# Alternate who goes first so that drift in the machine's load hits both.
		if [ $((round % 2)) -eq 1 ]; then
			n=$(rps "$nginx_url" "$DURATION"); e=$(rps "$edge_url" "$DURATION")
		else
			e=$(rps "$edge_url" "$DURATION"); n=$(rps "$nginx_url" "$DURATION")
		fi
		r=$(awk -v e="$e" -v n="$n" 'BEGIN {print e / n}')
		nginx_runs+=("$n")
		edge_runs+=("$e")
		ratios+=("$r")
		printf 'round %d: nginx %10.0f rps   edge %10.0f rps   ratio %.2f\n' "$round" "$n" "$e" "$r"
	done
	printf 'median:  nginx %10.0f rps   edge %10.0f rps\n' "$(median "${nginx_runs[@]}")" "$(median "${edge_runs[@]}")"
	# Rounds pair the two runs that were closest in time: the median of their
	# ratios is less sensitive to the machine's changing load than a ratio of medians.
	r=$(median "${ratios[@]}")
	printf 'edge/nginx ratio (%s): %.2f (median of the rounds)\n' "$1" "$r"
	summary+=("$(printf '%s %.2f' "$1" "$r")")
}
for scheme in $SCHEMES; do
	case $scheme in
	http) bench http "$NGINX_PORT" "$EDGE_PORT" ;;
	https) bench https "$NGINX_TLS_PORT" "$EDGE_TLS_PORT" ;;
	*) echo "bench-proxy: SCHEMES: unknown scheme $scheme (want http, https)" >&2; exit 2 ;;
	esac
done
echo "edge/nginx ratios: ${summary[*]}"
