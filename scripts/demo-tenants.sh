#!/usr/bin/env bash
# The second part of `scripts/demo.sh` (also runnable alone): two PostgreSQL servers as
# confined tenants, started together by
#   supervise --state-dir STATE up profiles/tenants
# Each has its own uid, label (s0:cX,cY), labeled home and address range. Shows the
# registry (`supervise label`), that the host's psql reaches both, an audit of a
# PostgreSQL file, and that tenant A's own backend cannot reach tenant B (dblink gets
# "Permission denied" from the supervisor, logged with both labels) while it reaches
# A itself, from A's own address. The state dir is temporary (not /var/lib/supervise);
# the tenants' accounts (sv-pg-a, sv-pg-b or existing ones for the same uids) stay.
# Needs root and a release build (scripts/demo.sh builds it).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root
require_release_bins
ensure_postgres

STATE=$(mktemp -d /tmp/supervise-tenants.XXXXXX)
chmod 0755 "$STATE" # the tenants' homes live below it
UP_PID=
cleanup() {
    local rc=$?
    if [ -n "$UP_PID" ] && alive "$UP_PID"; then
        stop_pid "$UP_PID" 30
    fi
    rm -rf "$STATE"
    exit "$rc"
}
trap cleanup EXIT

sv() { "$SUPERVISE" --state-dir "$STATE" "$@"; }
addr() { sv label | awk -v t="$1" '$1 == t { sub(/\.0\/24$/, ".1", $5); print $5 }'; }
q() { "$PG_BIN/psql" -X -h "$1" -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 "${@:2}"; }

LOG=$STATE/up.log
say "supervise up profiles/tenants (state dir $STATE)"
"$SUPERVISE" --state-dir "$STATE" up "$ROOT/profiles/tenants" </dev/null >"$LOG" 2>&1 &
UP_PID=$!
A=""
B=""
for _ in $(seq 300); do
    A=$(addr pg-a) B=$(addr pg-b)
    if [ -n "$A" ] && [ -n "$B" ] &&
        "$PG_BIN/pg_isready" -q -h "$A" -p 5432 && "$PG_BIN/pg_isready" -q -h "$B" -p 5432; then
        break
    fi
    alive "$UP_PID" || { tail -n 40 "$LOG" >&2; die "supervise up exited (log above)"; }
    sleep 0.2
done
"$PG_BIN/pg_isready" -q -h "$B" -p 5432 || { tail -n 40 "$LOG" >&2; die "tenants not ready"; }
grep -E "landlock|labels enforced" "$LOG" | sed -E 's/^(\[[^]]+\]) [0-9T:.-]+Z +/\1 /'

say "supervise label: the node registry"
sv label

say "operators reach both from the host"
q "$A" -Atc "select 'pg-a answers on ' || inet_server_addr()"
q "$B" -Atc "select 'pg-b answers on ' || inet_server_addr()"
echo "postmaster uids: $(ps -o user=,uid= -C postgres --no-headers | sort -u | tr '\n' ' ')"

say "labels on disk: supervise label --audit <pg-a's PG_VERSION> and <pg-b's home>"
sv label --audit "$STATE/home/pg-a/data/PG_VERSION" "$STATE/home/pg-b" || true

say "from inside pg-a (a backend under pg-a's labels): dblink to pg-b, then to pg-a itself"
q "$A" -qc "create extension if not exists dblink"
q "$A" -Atc "select dblink_connect('b', 'host=$B port=5432 user=postgres dbname=postgres')" 2>&1 | sed 's/^/  /' || true
q "$A" -Atc "select 'pg-a reached itself; it sees the call from ' || r
             from dblink('host=$A port=5432 user=postgres dbname=postgres',
                         'select inet_client_addr()::text') as t(r text)"
echo "-- the supervisor's log line for the refused connect:"
grep -m1 "denied" "$LOG" | sed -E 's/^(\[[^]]+\]) [0-9T:.-]+Z +/\1 /'

say "stopping: SIGTERM to supervise up (forwarded to both tenants)"
stop_pid "$UP_PID" 30
rc=$STOP_RC
UP_PID=
echo "supervise up exited with status $rc"
[ "$rc" = 0 ] || die "supervise up exited with status $rc (expected 0)"
say "tenants demo done"
