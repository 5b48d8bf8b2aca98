# Shared shell helpers for scripts/demo.sh and scripts/bench.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034  # STOP_RC is read by the scripts that source this

PG_BIN=/usr/lib/postgresql/15/bin
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REL=${REL:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
SUPERVISE=${SUPERVISE:-$REL/supervise}

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "run as root: supervise must run as root (it installs seccomp filters for other users)"
}

# require_release_bins [EXTRA_BIN...]: supervise and the given binaries are built.
# shellcheck disable=SC2120
require_release_bins() {
    local b
    for b in "$SUPERVISE" "$@"; do
        [ -x "$b" ] || die "$b is missing: build first (cargo build --release --workspace)"
    done
}

# Installs postgresql-15 (server and client) when the server binary is missing.
ensure_postgres() {
    if [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/psql" ] && [ -x "$PG_BIN/pgbench" ]; then
        return
    fi
    say "installing postgresql-15 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15 postgresql-client-15
    [ -x "$PG_BIN/postgres" ] || die "postgresql-15 installed but $PG_BIN/postgres is missing"
}

# Installs age (and ssh-keygen's openssh-client) when missing: signed requests.
ensure_age() {
    if command -v age >/dev/null && command -v age-keygen >/dev/null && command -v ssh-keygen >/dev/null; then
        return
    fi
    say "installing age and openssh-client (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends age openssh-client >/dev/null
}

# port_in_use PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# alive PID: the process exists and is not a zombie (kill -0 succeeds on zombies).
alive() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    st=${st##*) }
    [[ $st != Z* && $st != X* ]]
}

# Makes sure nothing listens on TCP port $1. An online Debian system cluster on that
# port (installing postgresql-15 creates 15/main on 5432) is stopped; anything else is
# an error that names the program.
ensure_port_free() {
    local port=$1 ver name p status rest i
    port_in_use "$port" || return 0
    if command -v pg_lsclusters >/dev/null; then
        while read -r ver name p status rest; do
            if [ "$p" = "$port" ] && [[ "$status" == online* ]]; then
                say "port $port is held by the system PostgreSQL cluster $ver/$name: stopping it (pg_ctlcluster $ver $name stop)"
                pg_ctlcluster "$ver" "$name" stop
            fi
        done < <(pg_lsclusters -h)
    fi
    for i in $(seq 50); do
        port_in_use "$port" || return 0
        sleep 0.2
    done
    ss -ltnp "sport = :$port" >&2 2>/dev/null || true
    die "TCP port $port is in use by another program (above); stop it and retry"
}

# init_cluster DIR: a throwaway cluster in DIR/data, DIR owned by postgres.
init_cluster() {
    local dir=$1
    chown postgres:postgres "$dir"
    chmod 0700 "$dir"
    (cd "$dir" && runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" \
        --auth=trust -U postgres -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1) \
        || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
}

# wait_pg_ready PID PORT LOG: until pg_isready answers on 127.0.0.1:PORT; fails if PID dies.
wait_pg_ready() {
    local pid=$1 port=$2 log=$3 i
    for i in $(seq 300); do
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            sleep 0.3
            alive "$pid" && return 0
            tail -n 40 "$log" >&2 || true
            die "something answered on 127.0.0.1:$port but our server $pid exited (port taken by another server?)"
        fi
        if ! alive "$pid"; then
            tail -n 40 "$log" >&2 || true
            die "server process $pid exited before accepting connections (log above)"
        fi
        sleep 0.2
    done
    tail -n 40 "$log" >&2 || true
    die "PostgreSQL not ready on 127.0.0.1:$port after 60 s (log above)"
}

# stop_pid PID [TIMEOUT_S]: SIGTERM, wait up to TIMEOUT_S (default 30), then SIGKILL.
# Sets STOP_RC to the exit status of PID, which must be a child of this shell (so call
# it directly, never inside $(...)).
STOP_RC=
stop_pid() {
    local pid=$1 timeout=${2:-30} _
    STOP_RC=0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq $((timeout * 10))); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            echo "warning: $pid still running ${timeout}s after SIGTERM: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || STOP_RC=$?
}
