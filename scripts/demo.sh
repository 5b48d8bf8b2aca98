#!/usr/bin/env bash
# `just demo`: PostgreSQL 15 under supervise, shown working.
#
# Creates a throwaway cluster in a temporary directory owned by postgres, starts
#   supervise run --profile profiles/postgres.toml -- postgres -D DIR -k DIR \
#       -c listen_addresses=127.0.0.1 -p 5432
# in the background, runs psql queries and a short pgbench over TCP 127.0.0.1:5432
# (the tracked port, so every byte goes through the supervisor), prints the
# supervisor's log lines about the tracked connections, stops it with SIGTERM and
# removes everything. Installs postgresql-15 with apt-get when it is missing.
# Needs root. Build first: cargo build --release --workspace (just demo does).
#
# Environment: SUPERVISE (binary, default target/release/supervise),
# SUPERVISE_LOG (supervisor log filter, default: info, and debug for the per-connection
# events of supervise::sockets and supervise::notify).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=5432 # profiles/postgres.toml tracks this port
require_root
require_release_bins
ensure_postgres
ensure_port_free "$PORT"

WORK=$(mktemp -d /tmp/supervise-demo.XXXXXX)
SUP_PID=
cleanup() {
    local rc=$?
    if [ -n "$SUP_PID" ] && alive "$SUP_PID"; then
        echo "cleanup: stopping supervise ($SUP_PID)" >&2
        stop_pid "$SUP_PID" 20
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

say "initdb a throwaway cluster in $WORK/data (owned by postgres)"
init_cluster "$WORK"

LOG=$WORK/supervise.log
say "supervise run --profile profiles/postgres.toml -- postgres -D $WORK/data -k $WORK -c listen_addresses=127.0.0.1 -p $PORT"
cd "$WORK"
SUPERVISE_LOG=${SUPERVISE_LOG:-info,supervise::sockets=debug,supervise::notify=debug} "$SUPERVISE" run --profile "$ROOT/profiles/postgres.toml" -- \
    "$PG_BIN/postgres" -D "$WORK/data" -k "$WORK" -c listen_addresses=127.0.0.1 -p "$PORT" \
    </dev/null 2>"$LOG" &
SUP_PID=$!
wait_pg_ready "$SUP_PID" "$PORT" "$LOG"
echo "supervise pid $SUP_PID; PostgreSQL accepts connections on 127.0.0.1:$PORT"

psql_tcp() { "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"; }

say "psql over TCP 127.0.0.1:$PORT (every byte serviced by the supervisor)"
psql_tcp -e <<'SQL'
SELECT version();
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL);
INSERT INTO accounts VALUES (1, 'alice', 100.00), (2, 'bob', 250.50), (3, 'carol', 75.25);
UPDATE accounts SET balance = balance - 25 WHERE owner = 'bob';
SELECT id, owner, balance FROM accounts ORDER BY id;
SELECT count(*) AS accounts, sum(balance) AS total FROM accounts;
SELECT md5(string_agg(g::text, ',')) AS md5_of_100k_numbers FROM generate_series(1, 100000) g;
SELECT inet_server_addr() AS server_addr, inet_server_port() AS server_port, current_user;
SQL

say "pgbench -i -s 1, then pgbench -S -c 4 -j 2 -T 5"
"$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -i -s 1 -q postgres 2>&1 | tail -n 1
"$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -S -c 4 -j 2 -T 5 postgres 2>&1 |
    grep -E '^(number of|latency average|tps)'

say "stopping: SIGTERM to supervise (forwarded to postgres: smart shutdown)"
stop_pid "$SUP_PID" 30
rc=$STOP_RC
SUP_PID=
echo "supervise exited with status $rc"

say "supervisor log lines about the tracked stream (pg-clients, port $PORT)"
# The log file holds the supervisor's lines and PostgreSQL's own stderr; PostgreSQL's
# lines look like "2026-01-01 12:00:00.000 UTC [123] LOG: ...".
sup_lines=$(grep -vE '^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] ' "$LOG" || true)
tracked=$(grep -Ei "pg-clients|$PORT|accept|connection|stream|tracked" <<<"$sup_lines" || true)
if [ -n "$tracked" ]; then
    n=$(wc -l <<<"$tracked")
    head -n 40 <<<"$tracked"
    [ "$n" -le 40 ] || echo "... ($n lines in all)"
else
    echo "(no supervisor line mentions the stream; last 20 lines of its log:)"
    tail -n 20 "$LOG"
fi

[ "$rc" = 0 ] || die "supervise exited with status $rc (expected 0 after a smart shutdown)"
say "demo done"
