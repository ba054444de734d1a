#!/usr/bin/env bash
# Idle-connection memory, side by side: the edgecell edge against nginx as a
# reverse proxy, each holding CONNS (10,000) client connections open and
# idle. Prints the resident set size (VmRSS of /proc/<pid>/status; for nginx
# the sum over its master and worker processes) of each before the
# connections and with them, the cost per connection (the difference
# divided by CONNS) and the ratio edge/nginx of those costs. Two passes,
# each with freshly started proxies:
#
#   idle    every connection sends one complete request (GET / with the
#           X-Routing-Key the edge routes by; nginx ignores it), reads its
#           200 response whole and then sends nothing: keep-alive
#           connections between requests, as a busy edge holds by the
#           thousand;
#   silent  the connections are opened and send nothing at all.
#
# The connections come from deploy/bench/idleconns. After it reports them
# all open, the proxy's figure is read when it has settled: once the proxy
# holds a file descriptor per connection and its RSS has stayed within
# GROWTH_KB for STABLE seconds, or when SETTLE seconds have passed (then the
# line says "not settled"). idleconns then checks that the proxy closed
# none of them before it closes them itself.
#
# What is measured is the memory of held connections, not how either proxy
# times them out: both are configured so that no timeout fires during the
# measurement (the edge: --idle-timeout and --head-timeout 300s, the head
# timeout covering a new connection's first byte, which silent connections
# never send; nginx: keepalive_timeout and client_header_timeout 300s), and
# with room for the connections (the edge: --max-conns 20000, whose default
# is half the file descriptor limit; nginx: worker_connections and
# worker_rlimit_nofile 20000). Every process stays under a file descriptor
# limit of 20,000.
#
# Run by `make bench-idle` (from the repository root). Installs nginx with
# apt-get when missing (needs root). Sends traffic only to 127.0.0.1.
# Everything it starts is stopped and everything it writes is removed when
# it ends, however it ends.
#
# Placement as deploy/bench/proxy.sh: on a machine with two or more cores
# the proxies get the last core (nginx: one worker; the Go runtime sizes
# itself to its CPU affinity) and idleconns and the upstream the others.
# PIN=0 runs everything unpinned, nginx with a worker per core.
#
# Settings (environment): CONNS (10000), CONCURRENCY (64: connections being
# opened at once), MODES ("idle silent"), SETTLE (30), STABLE (3),
# GROWTH_KB (128), PORT_BASE (18280), PIN (1), PLACEMENTS (100000: the
# edge's routing table, as in proxy.sh), TIMEOUT (300s).
set -euo pipefail

CONNS=${CONNS:-10000}
CONCURRENCY=${CONCURRENCY:-64}
MODES=${MODES:-idle silent}
SETTLE=${SETTLE:-30}
STABLE=${STABLE:-3}
GROWTH_KB=${GROWTH_KB:-128}
PORT_BASE=${PORT_BASE:-18280}
PLACEMENTS=${PLACEMENTS:-100000}
TIMEOUT=${TIMEOUT:-300s}
MAX_CONNS=20000
UPSTREAM_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
EDGE_PORT=$((PORT_BASE + 2))
KEY=bench
PIN=${PIN:-1}
CORES=$(nproc)
if [ "$CONNS" -gt 19000 ]; then
	echo "bench-idle: CONNS=$CONNS: each process must stay under 20,000 file descriptors" >&2
	exit 2
fi
cd "$(dirname "$0")/../.."
BENCH=bench-idle
# shellcheck source=lib.sh
. deploy/bench/lib.sh
PLACEMENT=${PLACEMENT/the load/idleconns}

install_missing nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

bench_workdir
bench_cleanup_extra() { exec 3>&- 4<&-; }

# forget drops a process that has ended from those cleanup stops; stop ends
# one and forgets it.
forget() { # pid
	local kept=() p
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
	PIDS=(${kept[@]+"${kept[@]}"})
}
stop() { # pid
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget "$1"
}

for p in "$UPSTREAM_PORT" "$NGINX_PORT" "$EDGE_PORT"; do
	port_free "$p" || { echo "bench-idle: port $p is in use; set PORT_BASE" >&2; exit 1; }
done

go build -o "$WORK/edge-bench" ./deploy/bench/edge
go build -o "$WORK/idleconns" ./deploy/bench/idleconns

write_upstream_conf "$WORK/upstream.conf" "$UPSTREAM_PORT"

# The reference: nginx as a reverse proxy as in proxy.sh (HTTP only), with
# room for the connections and timeouts that do not fire while they idle.
cat >"$WORK/nginx-proxy.conf" <<EOF
worker_processes $WORKERS;
worker_rlimit_nofile $MAX_CONNS;
daemon off;
pid $WORK/nginx-proxy.pid;
error_log $WORK/nginx-proxy.err warn;
events { worker_connections $MAX_CONNS; }
http {
	access_log off;
	upstream backend {
		server 127.0.0.1:$UPSTREAM_PORT;
		keepalive 1024;
	}
	server {
		listen 127.0.0.1:$NGINX_PORT backlog=4096;
		keepalive_requests 100000000;
		keepalive_timeout $TIMEOUT;
		client_header_timeout $TIMEOUT;
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
mkdir -p "$WORK/edge-data"

wait_ready() { # url name
	for _ in $(seq 400); do
		if curl -fsS -o /dev/null -H "X-Routing-Key: $KEY" "$1" 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "bench-idle: $2 did not come up at $1" >&2
	cat "$WORK"/*.err "$WORK/edge.out" >&2 2>/dev/null || true
	exit 1
}

on_load_cpus "$NGINX" -c "$WORK/upstream.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)
wait_ready "http://127.0.0.1:$UPSTREAM_PORT/" "upstream"

NGINX_PID= EDGE_PID=
start_proxies() {
	on_proxy_cpu "$NGINX" -c "$WORK/nginx-proxy.conf" -p "$WORK" >/dev/null 2>&1 &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	on_proxy_cpu "$WORK/edge-bench" --listen "127.0.0.1:$EDGE_PORT" --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
		--data-dir "$WORK/edge-data" --key "$KEY" --placements "$PLACEMENTS" \
		--max-conns "$MAX_CONNS" --idle-timeout "$TIMEOUT" --head-timeout "$TIMEOUT" >"$WORK/edge.out" 2>&1 &
	EDGE_PID=$!
	PIDS+=("$EDGE_PID")
	wait_ready "http://127.0.0.1:$NGINX_PORT/" "nginx"
	wait_ready "http://127.0.0.1:$EDGE_PORT/" "edge"
	if ! curl -fsS -D - -o /dev/null -H "X-Routing-Key: $KEY" "http://127.0.0.1:$EDGE_PORT/" | grep -qi '^X-Edge-Endpoint: upstream@bench'; then
		echo "bench-idle: the edge did not proxy to the upstream" >&2
		exit 1
	fi
}

# The processes a proxy consists of: nginx's master and its workers.
procs() { # nginx|edge
	case $1 in
	nginx) echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true) ;;
	edge) echo "$EDGE_PID" ;;
	esac
}
rss_kb() { # pid... -> the sum of their VmRSS in kB
	local pid sum=0 kb
	for pid in "$@"; do
		kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
		sum=$((sum + kb))
	done
	echo "$sum"
}
fd_count() { # pid... -> their open file descriptors
	local pid sum=0 n
	for pid in "$@"; do
		n=$(ls -U "/proc/$pid/fd" | wc -l)
		sum=$((sum + n))
	done
	echo "$sum"
}
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# settle waits, up to SETTLE seconds by the clock, for the proxy to hold at
# least min_fds file descriptors and its RSS to stay within GROWTH_KB of
# one figure for STABLE seconds. Sets RSS, FDS, SETTLED (1 or 0) and TOOK (ms).
settle() { # min_fds nginx|edge
	local min_fds=$1 who=$2 start deadline t ref=-1 since
	start=$(now_ms)
	deadline=$((start + SETTLE * 1000))
	since=$start
	while :; do
		# shellcheck disable=SC2046 # one word per process
		RSS=$(rss_kb $(procs "$who"))
		FDS=$(fd_count $(procs "$who"))
		t=$(now_ms)
		if [ "$FDS" -lt "$min_fds" ] || [ "$ref" -lt 0 ] ||
			[ "$RSS" -gt $((ref + GROWTH_KB)) ] || [ "$RSS" -lt $((ref - GROWTH_KB)) ]; then
			ref=$RSS
			since=$t
		fi
		TOOK=$((t - start))
		if [ $((t - since)) -ge $((STABLE * 1000)) ]; then SETTLED=1; return; fi
		if [ "$t" -ge "$deadline" ]; then SETTLED=0; return; fi
		sleep 0.2
	done
}

declare -A PER_CONN
# measure opens CONNS connections of the mode to one proxy, reads its
# memory before and with them, and prints the line of figures.
measure() { # mode nginx|edge port
	local mode=$1 who=$2 port=$3 before before_fds ready held status
	settle 0 "$who"
	before=$RSS before_fds=$FDS
	local before_note=""
	[ "$SETTLED" = 1 ] || before_note=" (not settled)"

	rm -f "$WORK/in" "$WORK/out"
	mkfifo "$WORK/in" "$WORK/out"
	on_load_cpus "$WORK/idleconns" -addr "127.0.0.1:$port" -n "$CONNS" -key "$KEY" -mode "$mode" \
		-concurrency "$CONCURRENCY" -hold 10m <"$WORK/in" >"$WORK/out" 2>"$WORK/idleconns.err" &
	local client=$!
	PIDS+=("$client")
	exec 3>"$WORK/in" 4<"$WORK/out"
	if ! read -r -t 120 -u 4 ready || [[ $ready != ready* ]]; then
		echo "bench-idle: idleconns did not open $CONNS $mode connections to $who: ${ready:-}" >&2
		cat "$WORK/idleconns.err" >&2
		exit 1
	fi

	settle $((before_fds + CONNS)) "$who"
	local after=$RSS after_fds=$FDS settled=$SETTLED took=$TOOK

	exec 3>&- # idleconns checks its connections, closes them and exits
	read -r -t 60 -u 4 held || held="idleconns said nothing: $(cat "$WORK/idleconns.err")"
	exec 4<&-
	status=0
	wait "$client" || status=$?
	forget "$client"

	local delta=$((after - before))
	local per=$(awk -v d="$delta" -v n="$CONNS" 'BEGIN {printf "%.2f", d / n}')
	PER_CONN[$mode.$who]=$per
	local note="settled in $(awk -v t="$took" 'BEGIN {printf "%.1f", t / 1000}')s"
	[ "$settled" = 1 ] || note="not settled after ${SETTLE}s"
	printf '%-5s rss %8.1f MiB before%s, %8.1f MiB with %d connections: +%.1f MiB, %6.2f KiB per connection (%s; fds %d -> %d; %s; %s)\n' \
		"$who" "$(awk -v k="$before" 'BEGIN {print k / 1024}')" "$before_note" "$(awk -v k="$after" 'BEGIN {print k / 1024}')" "$CONNS" \
		"$(awk -v k="$delta" 'BEGIN {print k / 1024}')" "$per" "$note" "$before_fds" "$after_fds" "${ready#ready }" "$held"
	if [ "$status" != 0 ]; then
		echo "bench-idle: $who closed some of the $mode connections before the end ($held): the figure above is not of $CONNS held connections" >&2
		cat "$WORK/idleconns.err" >&2
		exit 1
	fi
	if [ "$after_fds" -lt $((before_fds + CONNS)) ]; then
		echo "bench-idle: $who held $after_fds file descriptors, fewer than $before_fds + $CONNS: not every connection was accepted" >&2
		exit 1
	fi
}

echo "$CONNS connections per proxy, $CORES cores, $PLACEMENT; edge --max-conns $MAX_CONNS --idle-timeout $TIMEOUT --head-timeout $TIMEOUT, $PLACEMENTS placements; nginx worker_connections $MAX_CONNS, keepalive_timeout and client_header_timeout $TIMEOUT; RSS settled: within $GROWTH_KB kB for ${STABLE}s, at most ${SETTLE}s"
summary=()
for mode in $MODES; do
	case $mode in
	idle) echo "-- idle: one request and its 200 response per connection, then nothing (keep-alive)" ;;
	silent) echo "-- silent: connections opened that send nothing" ;;
	*) echo "bench-idle: MODES: unknown mode $mode (want idle, silent)" >&2; exit 2 ;;
	esac
	start_proxies
	measure "$mode" nginx "$NGINX_PORT"
	measure "$mode" edge "$EDGE_PORT"
	stop "$EDGE_PID"
	stop "$NGINX_PID"
	r=$(awk -v e="${PER_CONN[$mode.edge]}" -v n="${PER_CONN[$mode.nginx]}" 'BEGIN {if (n > 0) printf "%.2f", e / n; else print "n/a"}')
	echo "edge/nginx ratio of the cost per connection ($mode): $r"
	summary+=("$mode $r")
done
echo "edge/nginx per-connection ratios: ${summary[*]}"
