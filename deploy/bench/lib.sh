# Shared by the benchmark scripts (proxy.sh, idle.sh), which source it after
# setting BENCH (their name in messages), PIN and CORES. It defines:
#
#   on_proxy_cpu, on_load_cpus  run a program on the proxies' core or on the
#                               others (taskset; both exec, so they only run
#                               as a background job or in a pipeline, and $!
#                               is the program's own PID), WORKERS (nginx
#                               worker_processes) and PLACEMENT (a line for
#                               the report; the caller names its load);
#   install_missing NAME...     installs the Debian packages of the missing
#                               commands with apt-get (needs root);
#   bench_workdir               WORK (a temporary directory) and PIDS, with a
#                               trap that stops every PID and removes WORK
#                               however the script ends (bench_cleanup_extra,
#                               if defined, runs first);
#   port_free PORT              true when nothing listens on 127.0.0.1:PORT;
#   write_upstream_conf FILE PORT  the upstream every benchmark proxies to:
#                               nginx answering a fixed body, as cheap as an
#                               upstream gets, so that the proxies' own cost
#                               decides the result.

if [ "$PIN" = 1 ] && [ "$CORES" -ge 2 ]; then
	PROXY_CPUS=$((CORES - 1))
	LOAD_CPUS=0-$((CORES - 2))
	WORKERS=1
	on_proxy_cpu() { exec taskset -c "$PROXY_CPUS" "$@"; }
	on_load_cpus() { exec taskset -c "$LOAD_CPUS" "$@"; }
	PLACEMENT="proxies pinned to cpu $PROXY_CPUS (nginx: 1 worker), the load and upstream on cpu $LOAD_CPUS"
else
	WORKERS=auto
	on_proxy_cpu() { exec "$@"; }
	on_load_cpus() { exec "$@"; }
	PLACEMENT="unpinned (nginx: a worker per core)"
fi

install_missing() { # command...
	local missing=() c
	for c in "$@"; do
		if [ "$c" = nginx ]; then
			command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
		else
			command -v "$c" >/dev/null 2>&1 || missing+=("$c")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return
	if [ "$(id -u)" != 0 ]; then
		echo "$BENCH: ${missing[*]} missing; run as root to install them with apt-get" >&2
		exit 1
	fi
	echo "installing ${missing[*]} ..."
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

bench_workdir() {
	WORK=$(mktemp -d "/tmp/edgecell-$BENCH.XXXXXX")
	PIDS=()
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_upstream_conf() { # file port
	cat >"$1" <<CONF
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 4096; }
http {
	access_log off;
	server {
		listen 127.0.0.1:$2 backlog=4096;
		keepalive_requests 100000000;
		keepalive_timeout 300s;
		location / { default_type text/plain; return 200 "hello from the upstream\n"; }
	}
}
CONF
}
