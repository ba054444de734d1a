#!/usr/bin/env bash
# Proxy throughput, side by side: the edgecell edge against nginx, both
# reverse-proxying to the same upstream with keep-alive, both driven by wrk
# with identical settings in the same run. Prints requests per second for
# each and the ratio edge/nginx.
#
# Run by `make bench-proxy` (from the repository root). Installs nginx and wrk
# with apt-get when missing (needs root). Everything it starts is stopped and
# everything it writes is removed when it ends, however it ends.
#
# Settings (environment): DURATION (10s), CONNECTIONS (64), THREADS (2),
# ROUNDS (3: the median round is reported), PORT_BASE (18180),
# EDGE_GOMAXPROCS (unset: the Go default, every core).
set -euo pipefail

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
PORT_BASE=${PORT_BASE:-18180}
UPSTREAM_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
EDGE_PORT=$((PORT_BASE + 2))
KEY=bench

cd "$(dirname "$0")/../.."

install_tools() {
	local missing=()
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
	command -v wrk >/dev/null 2>&1 || missing+=(wrk)
	[ ${#missing[@]} -eq 0 ] && return
	if [ "$(id -u)" != 0 ]; then
		echo "bench-proxy: ${missing[*]} missing; run as root to install them with apt-get" >&2
		exit 1
	fi
	echo "installing ${missing[*]} ..."
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_tools
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/edgecell-bench.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$UPSTREAM_PORT" "$NGINX_PORT" "$EDGE_PORT"; do
	port_free "$p" || { echo "bench-proxy: port $p is in use; set PORT_BASE" >&2; exit 1; }
done

# The upstream: nginx answering a fixed body, as cheap as an upstream gets,
# so that the proxies' own cost decides the result.
cat >"$WORK/upstream.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 4096; }
http {
	access_log off;
	server {
		listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
		keepalive_requests 100000000;
		keepalive_timeout 300s;
		location / { default_type text/plain; return 200 "hello from the upstream\n"; }
	}
}
EOF

# The reference: nginx as a reverse proxy with upstream keep-alive, one
# worker per core, setting the same forwarding headers the edge sets.
cat >"$WORK/nginx-proxy.conf" <<EOF
worker_processes auto;
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

"$NGINX" -c "$WORK/upstream.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)
"$NGINX" -c "$WORK/nginx-proxy.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)

go build -o "$WORK/edge-bench" ./deploy/bench/edge
mkdir -p "$WORK/edge-data"
if [ -n "${EDGE_GOMAXPROCS:-}" ]; then export GOMAXPROCS=$EDGE_GOMAXPROCS; fi
"$WORK/edge-bench" --listen "127.0.0.1:$EDGE_PORT" --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
	--data-dir "$WORK/edge-data" --key "$KEY" >"$WORK/edge.out" 2>&1 &
PIDS+=($!)
unset GOMAXPROCS

wait_ready() { # url name
	for _ in $(seq 200); do
		if curl -fsS -o /dev/null -H "X-Routing-Key: $KEY" "$1" 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "bench-proxy: $2 did not come up at $1" >&2
	cat "$WORK"/*.err "$WORK/edge.out" >&2 2>/dev/null || true
	exit 1
}
wait_ready "http://127.0.0.1:$UPSTREAM_PORT/" "upstream"
wait_ready "http://127.0.0.1:$NGINX_PORT/" "nginx"
wait_ready "http://127.0.0.1:$EDGE_PORT/" "edge"
if ! curl -fsS -D - -o /dev/null -H "X-Routing-Key: $KEY" "http://127.0.0.1:$EDGE_PORT/" | grep -qi '^X-Edge-Endpoint: upstream@bench'; then
	echo "bench-proxy: the edge did not proxy to the upstream" >&2
	exit 1
fi

rps() { # port duration
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" -H "X-Routing-Key: $KEY" "http://127.0.0.1:$1/" |
		awk '/Requests\/sec/ {print $2} /Non-2xx|Socket errors/ {print "bench-proxy: " $0 > "/dev/stderr"}'
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS rounds, $(nproc) cores; upstream: nginx returning a fixed body"
rps "$NGINX_PORT" 2s >/dev/null # warm up both: connections, pools, caches
rps "$EDGE_PORT" 2s >/dev/null
nginx_runs=()
edge_runs=()
for round in $(seq "$ROUNDS"); do
	# Alternate who goes first so that drift in the machine's load hits both.
	if [ $((round % 2)) -eq 1 ]; then
		n=$(rps "$NGINX_PORT" "$DURATION"); e=$(rps "$EDGE_PORT" "$DURATION")
	else
		e=$(rps "$EDGE_PORT" "$DURATION"); n=$(rps "$NGINX_PORT" "$DURATION")
	fi
	nginx_runs+=("$n")
	edge_runs+=("$e")
	printf 'round %d: nginx %10.0f rps   edge %10.0f rps   ratio %.2f\n' "$round" "$n" "$e" "$(awk -v e="$e" -v n="$n" 'BEGIN {print e / n}')"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
n=$(median "${nginx_runs[@]}")
e=$(median "${edge_runs[@]}")
printf 'median:  nginx %10.0f rps   edge %10.0f rps\n' "$n" "$e"
printf 'edge/nginx ratio: %.2f\n' "$(awk -v e="$e" -v n="$n" 'BEGIN {print e / n}')"
