#!/usr/bin/env bash
# scripts/soak.sh: re-measures "it keeps every byte" on the current engine, with
# PostgreSQL 15 as the tenant. Not part of CI; prints figures; exits non-zero if a
# check fails (every check is still run and reported).
#
# A throwaway cluster (trust auth, 127.0.0.1:$PORT, socket dir in the work dir) runs as
#   supervise run --profile <profiles/postgres.toml with listen_port = $PORT> -- \
#       postgres -D WORK/data -k WORK -c listen_addresses=127.0.0.1 -p $PORT
# so every client byte over TCP is serviced by the supervisor (identity transform).
# Setup and inspection use the unix socket, which the profile does not track.
#
#   1. COPY round trip under SIGHUPs: COPY_ROWS deterministic rows (generate_series +
#      md5, dumped over the unix socket into a client-side file of ~1 GiB) go in with
#      `COPY t FROM STDIN` and come back with `COPY (SELECT ... ORDER BY id) TO STDOUT`,
#      both with psql over TCP; SHA-256 in = SHA-256 out. HUPS SIGHUPs (half per copy,
#      paced by how far psql has read / written, at least 20 ms apart) go to the
#      supervise process, which forwards them to the postmaster (a config reload, which
#      it passes on to every backend). Checks: hashes and sizes equal, every SIGHUP
#      forwarded and received, and the supervisor's "connection closed" accounting of
#      both connections: dropped = 0 and taken = delivered in both directions.
#   2. Write soak: pgbench -i -s 10, then pgbench -N -c 8 -j 2 -T SOAK_SECONDS over TCP.
#      Checks: pgbench exits 0, 0 failed transactions.
#   3. SIGKILL of the supervisor with pgbench -N running: the time until no process of
#      the tenant's PID namespace remains (polled every 5 ms), then the same data
#      directory is started BARE (no supervise): it must recover, pass pg_amcheck
#      --heapallindexed --parent-check over every database, count every table, keep
#      pgbench's balance invariant (sum of abalance = sum of history delta) and give
#      back table t with the SHA-256 of part 1.
#
# Needs root. Builds target/release/supervise (cargo build --release -p supervise) when
# it is missing or older than its sources. Environment: SOAK_SECONDS (300), COPY_ROWS
# (10035676: 1 072 741 905 bytes of COPY text, 0.999 GiB), HUPS (100, even),
# KILL_LOAD_SECONDS (10: pgbench runs this long before the SIGKILL), COPY_TIMEOUT (1800 s
# per copy), SOAK_KEEP_LOGS=1 (keep the logs in the work dir; they are kept anyway if
# a check fails; the data directory and the copy files are always removed).
set -euo pipefail

# shellcheck source=scripts/lib.sh disable=SC1091  # followed with shellcheck -x
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=55432
SOAK_SECONDS=${SOAK_SECONDS:-300}
COPY_ROWS=${COPY_ROWS:-10035676}
HUPS=${HUPS:-100}
KILL_LOAD_SECONDS=${KILL_LOAD_SECONDS:-10}
COPY_TIMEOUT=${COPY_TIMEOUT:-1800}
[ $((HUPS % 2)) = 0 ] || die "HUPS must be even (half during each copy)"

require_root
ensure_postgres
command -v setpriv >/dev/null || die "setpriv (util-linux) is needed to start the bare server"

# The release binary, rebuilt when a source it is built from is newer.
needs_build() {
    [ -x "$SUPERVISE" ] || return 0
    [ -n "$(find "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" "$ROOT/supervisor/Cargo.toml" \
        "$ROOT/supervisor/src" "$ROOT/transforms/Cargo.toml" "$ROOT/transforms/src" \
        "$ROOT/profiles/default.toml" -newer "$SUPERVISE" -print -quit)" ]
}
if needs_build; then
    say "building $SUPERVISE (missing or older than its sources)"
    (cd "$ROOT" && cargo build --release -p supervise)
fi
require_release_bins
ensure_port_free "$PORT"

SCRIPT_T0=$EPOCHREALTIME
WORK=$(mktemp -d /tmp/supervise-soak.XXXXXX)
SUP_PID=
BARE_PID=
BG_PID=
NS_FD=
FAILED=()
cleanup() {
    local rc=$?
    if [ -n "$BG_PID" ] && alive "$BG_PID"; then
        kill -TERM "$BG_PID" 2>/dev/null || true
        wait "$BG_PID" 2>/dev/null || true
    fi
    if [ -n "$SUP_PID" ] && alive "$SUP_PID"; then
        echo "cleanup: stopping supervise ($SUP_PID)" >&2
        stop_pid "$SUP_PID" 30
    fi
    if [ -n "$BARE_PID" ] && alive "$BARE_PID"; then
        echo "cleanup: stopping the bare postgres ($BARE_PID)" >&2
        stop_pid "$BARE_PID" 60
    fi
    if [ -n "$NS_FD" ]; then exec {NS_FD}<&-; fi
    rm -rf "$WORK/data" "$WORK/copy.in" "$WORK/copy.out"
    if [ "$rc" != 0 ] || [ "${SOAK_KEEP_LOGS:-0}" = 1 ]; then
        echo "logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

pass() { printf '  PASS  %s\n' "$*"; }
fail() {
    printf '  FAIL  %s\n' "$*"
    FAILED+=("$*")
}
# check DESCRIPTION COMMAND...: runs COMMAND, PASS or FAIL.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# ge A B: A is an integer >= B.
ge() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ]; }
figure() { printf '  %-44s %s\n' "$1" "$2"; }

# now: seconds since the epoch, microseconds (integer), without a fork.
now_us() { local t=${EPOCHREALTIME//[.,]/}; NOW_US=$((10#$t)); }
# secs START_EPOCHREALTIME [END]: elapsed seconds, 3 decimals.
secs() {
    local a=${1//[.,]/} b=${2:-$EPOCHREALTIME}
    b=${b//[.,]/}
    local d=$((10#$b - 10#$a))
    printf '%d.%03d' $((d / 1000000)) $((d % 1000000 / 1000))
}

# nap SECONDS: sleep without a fork (a read with a timeout on a fifo nobody writes).
mkfifo "$WORK/nap.fifo"
exec {NAP_FD}<>"$WORK/nap.fifo"
nap() { read -rt "$1" -u "$NAP_FD" _ || true; }

PSQL_UNIX=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres)
PSQL_TCP=("$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
psql_unix() { "${PSQL_UNIX[@]}" "$@"; }
# one_value [-d DB] SQL: the single value the query returns (unix socket).
one_value() { "${PSQL_UNIX[@]}" -At "$@"; }

LOG=$WORK/supervise.log

# field NAME LINE: the integer value NAME=... in a log line.
field() {
    local re="(^| )$1=([0-9]+)"
    [[ $2 =~ $re ]] || { echo "?"; return; }
    echo "${BASH_REMATCH[2]}"
}

# accounting PORT: the supervisor's "connection closed" line for the tracked connection
# whose peer is 127.0.0.1:PORT (the last one accepted from that port): its inode from
# "accepted connection handed to tenant", then the "connection closed" line logged just
# before "released tracked socket inode=INODE". Waits up to 30 s for the release.
accounting() {
    local port=$1 inode line
    ACCT_LINE=
    line=$(grep -E "accepted connection handed to tenant .* peer=127\.0\.0\.1:$port\$" "$LOG" | tail -n 1) || true
    inode=$(field inode "$line")
    [ "$inode" != "?" ] || { echo "  no accepted connection from 127.0.0.1:$port in the supervisor's log"; return 1; }
    for _ in $(seq 300); do
        grep -q "released tracked socket inode=$inode\$" "$LOG" && break
        nap 0.1
    done
    ACCT_LINE=$(awk -v inode="$inode" '
        / connection closed / { last = $0 }
        $0 ~ (" released tracked socket inode=" inode "$") { print last; exit }' "$LOG")
    [ -n "$ACCT_LINE" ] || { echo "  connection inode $inode (port $port) was not released within 30 s"; return 1; }
    printf '  inode %s, peer 127.0.0.1:%s:\n    %s\n' "$inode" "$port" "${ACCT_LINE#* connection closed }"
}

# check_accounting WHAT MIN_FIELD MIN_BYTES: checks ACCT_LINE (dropped = 0, taken =
# delivered both ways, MIN_FIELD >= MIN_BYTES: the line is that of the big copy).
check_accounting() {
    local what=$1 minf=$2 minb=$3 d
    if [ -z "$ACCT_LINE" ]; then
        fail "$what: accounting line found"
        return
    fi
    for d in peer_to_tenant tenant_to_peer; do
        check "$what: ${d}_dropped = 0 ($(field "${d}_dropped" "$ACCT_LINE"))" \
            test "$(field "${d}_dropped" "$ACCT_LINE")" = 0
        check "$what: ${d}_taken = ${d}_delivered ($(field "${d}_taken" "$ACCT_LINE") / $(field "${d}_delivered" "$ACCT_LINE"))" \
            test "$(field "${d}_taken" "$ACCT_LINE")" = "$(field "${d}_delivered" "$ACCT_LINE")"
    done
    local v
    v=$(field "$minf" "$ACCT_LINE")
    check "$what: $minf >= $minb (the copy's bytes: $v)" ge "$v" "$minb"
}

# ---------------------------------------------------------------- the cluster

say "initdb a throwaway cluster in $WORK/data (owned by postgres)"
init_cluster "$WORK"
PROFILE=$WORK/postgres.toml
sed "s/^listen_port = 5432\$/listen_port = $PORT/" "$ROOT/profiles/postgres.toml" >"$PROFILE"
grep -q "^listen_port = $PORT\$" "$PROFILE" || die "could not set listen_port = $PORT in the copy of profiles/postgres.toml"
"$SUPERVISE" check "$PROFILE" >/dev/null || die "supervise check $PROFILE failed"

echo "engine: $SUPERVISE ($(stat -c '%y' "$SUPERVISE" | cut -d. -f1), sha256 $(sha256sum "$SUPERVISE" | cut -c1-16)), source tree at $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- supervisor transforms 2>/dev/null || echo ' + uncommitted changes')"
echo "kernel $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

say "supervise run --profile $PROFILE -- postgres -D $WORK/data -k $WORK -c listen_addresses=127.0.0.1 -p $PORT"
cd "$WORK"
SUPERVISE_LOG=${SUPERVISE_LOG:-info,supervise::connection=debug,supervise::supervisor=debug} "$SUPERVISE" run --profile "$PROFILE" -- \
    "$PG_BIN/postgres" -D "$WORK/data" -k "$WORK" -c listen_addresses=127.0.0.1 -p "$PORT" \
    </dev/null >"$WORK/supervise.out" 2>"$LOG" &
SUP_PID=$!
wait_pg_ready "$SUP_PID" "$PORT" "$LOG"
PM_PID=$(sed -n 's/.*tenant started under seccomp user notification .* pid=\([0-9]*\) .*/\1/p' "$LOG" | head -n 1)
if [ -z "$PM_PID" ] || ! alive "$PM_PID"; then die "cannot find the postmaster's pid in $LOG"; fi
echo "supervise pid $SUP_PID, postmaster pid $PM_PID, 127.0.0.1:$PORT tracked (identity)"

# ---------------------------------------------------------------- part 1

say "part 1: COPY round trip of $COPY_ROWS rows over TCP under $HUPS SIGHUPs"
IN=$WORK/copy.in
OUT=$WORK/copy.out
t=$EPOCHREALTIME
psql_unix -d postgres -c "COPY (SELECT i, md5(i::text), md5(i::text || 'a'), md5(i::text || 'b')
    FROM generate_series(1, $COPY_ROWS) AS i) TO STDOUT" >"$IN"
IN_SIZE=$(stat -c %s "$IN")
echo "generated $IN ($IN_SIZE bytes) over the unix socket in $(secs "$t") s"
psql_unix -d postgres -c 'CREATE TABLE t (id bigint PRIMARY KEY, a text NOT NULL, b text NOT NULL, c text NOT NULL)'

HUP_GAP_US=20000
# copy_under_hups LABEL FD TOTAL PSQL_ARGS...: runs psql over TCP in the background
# (stdin/stdout already redirected by the caller via COPY_STDIN / COPY_STDOUT) and, while
# it runs, sends HUPS/2 SIGHUPs to the supervisor, the k-th once psql's descriptor FD has
# passed (2k-1)/HUPS of TOTAL bytes. Sets COPY_RC, COPY_SECS, HUP_SENT, HUP_FIRST,
# HUP_LAST (seconds into the copy).
copy_under_hups() {
    local label=$1 fd=$2 total=$3 count=$((HUPS / 2)) pid pos start last_us=0
    shift 3
    COPY_RC=0 HUP_SENT=0 HUP_FIRST='' HUP_LAST=''
    start=$EPOCHREALTIME
    "${PSQL_TCP[@]}" "$@" <"$COPY_STDIN" >"$COPY_STDOUT" 2>"$WORK/$label.err" &
    pid=$!
    while alive "$pid"; do
        now_us
        if [ "$HUP_SENT" -lt "$count" ] && [ $((NOW_US - last_us)) -ge "$HUP_GAP_US" ]; then
            pos=0
            { read -r _ pos _; } 2>/dev/null <"/proc/$pid/fdinfo/$fd" || pos=0
            if [[ $pos =~ ^[0-9]+$ ]] && ((pos * 2 * count >= (2 * HUP_SENT + 1) * total)); then
                kill -HUP "$SUP_PID"
                HUP_SENT=$((HUP_SENT + 1))
                last_us=$NOW_US
                HUP_LAST=$(secs "$start")
                [ -n "$HUP_FIRST" ] || HUP_FIRST=$HUP_LAST
            fi
        fi
        if [ $((NOW_US - 10#${start//[.,]/})) -gt $((COPY_TIMEOUT * 1000000)) ]; then
            echo "$label: still running after $COPY_TIMEOUT s: killing psql" >&2
            kill -TERM "$pid" 2>/dev/null || true
        fi
        nap 0.01
    done
    wait "$pid" || COPY_RC=$?
    COPY_SECS=$(secs "$start")
}

# COPY IN: psql reads the file on fd 0; the port query's output goes to a file (\o).
COPY_STDIN=$IN COPY_STDOUT=$WORK/copy_in.out
copy_under_hups copy_in 0 "$IN_SIZE" \
    -c "\\o $WORK/copy_in.port" -c 'SELECT inet_client_port()' -c '\o' -c 'COPY t FROM STDIN'
IN_RC=$COPY_RC IN_SECS=$COPY_SECS IN_HUPS=$HUP_SENT IN_HUP_SPAN="$HUP_FIRST .. $HUP_LAST"
IN_PORT=$(cat "$WORK/copy_in.port" 2>/dev/null || echo "?")
cat "$WORK/copy_in.err" >&2
psql_unix -d postgres -c 'ANALYZE t'

# COPY OUT: psql writes the rows on fd 1.
COPY_STDIN=/dev/null COPY_STDOUT=$OUT
copy_under_hups copy_out 1 "$IN_SIZE" \
    -c "\\o $WORK/copy_out.port" -c 'SELECT inet_client_port()' -c '\o' \
    -c 'COPY (SELECT id, a, b, c FROM t ORDER BY id) TO STDOUT'
OUT_RC=$COPY_RC OUT_SECS=$COPY_SECS OUT_HUPS=$HUP_SENT OUT_HUP_SPAN="$HUP_FIRST .. $HUP_LAST"
OUT_PORT=$(cat "$WORK/copy_out.port" 2>/dev/null || echo "?")
cat "$WORK/copy_out.err" >&2
OUT_SIZE=$(stat -c %s "$OUT")
IN_SHA=$(sha256sum "$IN" | cut -d' ' -f1)
OUT_SHA=$(sha256sum "$OUT" | cut -d' ' -f1)
ROWS_IN_T=$(one_value -d postgres -c 'SELECT count(*) FROM t')
nap 1 # the postmaster logs its last reload
FORWARDED=$(grep -c 'forwarding signal to the tenant sig=1$' "$LOG" || true)
RELOADS=$(grep -c 'received SIGHUP, reloading configuration files' "$LOG" || true)
mib() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f MiB/s", b / 1048576 / s }'; }

echo
echo "part 1: COPY round trip over TCP 127.0.0.1:$PORT under SIGHUPs"
figure "rows" "$COPY_ROWS (in table t afterwards: $ROWS_IN_T)"
figure "bytes in (file)" "$IN_SIZE ($(awk -v b="$IN_SIZE" 'BEGIN { printf "%.4f", b / 1073741824 }') GiB)"
figure "bytes out" "$OUT_SIZE"
figure "SHA-256 in" "$IN_SHA"
figure "SHA-256 out" "$OUT_SHA"
figure "COPY FROM STDIN" "$IN_SECS s ($(mib "$IN_SIZE" "$IN_SECS")), psql exit $IN_RC, SIGHUPs $IN_HUPS at $IN_HUP_SPAN s"
figure "COPY TO STDOUT" "$OUT_SECS s ($(mib "$OUT_SIZE" "$OUT_SECS")), psql exit $OUT_RC, SIGHUPs $OUT_HUPS at $OUT_HUP_SPAN s"
figure "SIGHUPs sent to supervise" "$((IN_HUPS + OUT_HUPS))"
figure "forwarded (supervisor log)" "$FORWARDED"
figure "reloads (postmaster log)" "$RELOADS"
echo " accounting of the COPY FROM STDIN connection:"
accounting "$IN_PORT" || true
IN_ACCT=$ACCT_LINE
echo " accounting of the COPY TO STDOUT connection:"
accounting "$OUT_PORT" || true
OUT_ACCT=$ACCT_LINE
check "COPY FROM STDIN: psql exit 0" test "$IN_RC" = 0
check "COPY TO STDOUT: psql exit 0" test "$OUT_RC" = 0
check "rows in t = $COPY_ROWS" test "$ROWS_IN_T" = "$COPY_ROWS"
check "bytes out = bytes in" test "$OUT_SIZE" = "$IN_SIZE"
if check "SHA-256 out = SHA-256 in" test "$OUT_SHA" = "$IN_SHA"; then :; else
    cmp "$IN" "$OUT" 2>&1 | head -n 3 || true
fi
check "$HUPS SIGHUPs sent during the copies" test $((IN_HUPS + OUT_HUPS)) = "$HUPS"
check "every SIGHUP forwarded to the tenant" test "$FORWARDED" = "$HUPS"
check "every SIGHUP received by the postmaster (a config reload each)" test "$RELOADS" = "$HUPS"
ACCT_LINE=$IN_ACCT
check_accounting "COPY FROM STDIN connection" peer_to_tenant_taken "$IN_SIZE"
ACCT_LINE=$OUT_ACCT
check_accounting "COPY TO STDOUT connection" tenant_to_peer_taken "$OUT_SIZE"
rm -f "$OUT"

# ---------------------------------------------------------------- part 2

PGBENCH=("$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres)
say "part 2: pgbench -i -s 10, then pgbench -N -c 8 -j 2 -T $SOAK_SECONDS over TCP"
t=$EPOCHREALTIME
INIT_RC=0
timeout -k 10 900 "${PGBENCH[@]}" -i -s 10 postgres >"$WORK/pgbench-init.out" 2>&1 || INIT_RC=$?
INIT_SECS=$(secs "$t")
SOAK_RC=0
timeout -k 10 $((SOAK_SECONDS + 600)) "${PGBENCH[@]}" -N -c 8 -j 2 -T "$SOAK_SECONDS" -P 60 postgres \
    >"$WORK/pgbench-soak.out" 2>&1 || SOAK_RC=$?
TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' "$WORK/pgbench-soak.out")
XACTS=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench-soak.out")
FAILED_XACTS=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench-soak.out")
echo
echo "part 2: write soak over TCP 127.0.0.1:$PORT"
figure "pgbench -i -s 10" "exit $INIT_RC, $INIT_SECS s ($(grep -E '^done in' "$WORK/pgbench-init.out" || echo 'no "done in" line'))"
figure "pgbench -N -c 8 -j 2 -T $SOAK_SECONDS" "exit $SOAK_RC"
figure "tps (without initial connection time)" "${TPS:-?}"
figure "transactions processed" "${XACTS:-?}"
figure "failed transactions" "${FAILED_XACTS:-?}"
grep -E '^(latency average|progress:|number of failed|tps =)' "$WORK/pgbench-soak.out" | sed 's/^/    /'
check "pgbench -i exit 0" test "$INIT_RC" = 0
check "pgbench -N exit 0" test "$SOAK_RC" = 0
check "0 failed transactions" test "${FAILED_XACTS:-?}" = 0
if [ "$SOAK_RC" != 0 ]; then tail -n 20 "$WORK/pgbench-soak.out"; fi

# Every connection the supervisor released so far (pg_isready probes, psql, pgbench).
CLOSED=$(grep -c ' connection closed ' "$LOG" || true)
LOSSY=$(grep ' connection closed ' "$LOG" | grep -vc 'peer_to_tenant_dropped=0 .*tenant_to_peer_dropped=0$' || true)
UNEVEN=$(grep ' connection closed ' "$LOG" | awk '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    if (v["peer_to_tenant_taken"] != v["peer_to_tenant_delivered"] + v["peer_to_tenant_dropped"] ||
        v["tenant_to_peer_taken"] != v["tenant_to_peer_delivered"] + v["tenant_to_peer_dropped"]) n++ }
    END { print n + 0 }')
echo
figure "connections released (parts 1-2, all)" "$CLOSED, with bytes dropped: $LOSSY, taken != delivered + dropped: $UNEVEN"
if [ "$LOSSY" != 0 ]; then
    grep ' connection closed ' "$LOG" | grep -v 'peer_to_tenant_dropped=0 .*tenant_to_peer_dropped=0$' | head -n 5 | sed 's/^/    /'
fi
check "every released connection: taken = delivered + dropped" test "$UNEVEN" = 0

# ---------------------------------------------------------------- part 3

say "part 3: SIGKILL of the supervisor under pgbench -N, then the data directory bare"
# scan_ns: NS_ALL / NS_LIVE = processes (any / not zombie) in the tenant's PID namespace
# (NS_FD holds it open), NS_PIDS their pids. The namespace is compared by stat of the
# ns file (device and inode), a builtin test: no fork per process.
scan_ns() {
    local p st
    NS_ALL=0 NS_LIVE=0 NS_PIDS=()
    for p in /proc/[0-9]*; do
        if [[ $p/ns/pid -ef /proc/self/fd/$NS_FD ]]; then
            NS_ALL=$((NS_ALL + 1))
            NS_PIDS+=("${p#/proc/}")
            st=
            { read -r st; } 2>/dev/null <"$p/stat" || true
            st=${st##*) }
            [[ -z $st || $st == Z* || $st == X* ]] || NS_LIVE=$((NS_LIVE + 1))
        fi
    done
}
exec {NS_FD}<"/proc/$PM_PID/ns/pid"
NS_NAME=$(readlink "/proc/$PM_PID/ns/pid")

BG_RC=0
# -n: no vacuum, so pgbench_history is not truncated and the balance invariant spans
# part 2 and this run.
"${PGBENCH[@]}" -n -N -c 8 -j 2 -T $((KILL_LOAD_SECONDS + 120)) postgres >"$WORK/pgbench-kill.out" 2>&1 &
BG_PID=$!
nap "$KILL_LOAD_SECONDS"
alive "$BG_PID" || fail "pgbench (load for the SIGKILL) ended before the kill"
scan_ns
BEFORE_ALL=$NS_ALL
BEFORE_LIST=$(ps -o pid=,stat=,args= -p "$(
    IFS=,
    echo "${NS_PIDS[*]}"
)" || true)
BACKENDS=$(grep -c 'postgres: postgres postgres 127.0.0.1' <<<"$BEFORE_LIST" || true)

kill -KILL "$SUP_PID"
now_us
KILL_US=$NOW_US
LIVE_GONE_US='' ALL_GONE_US='' BG_GONE_US='' SCANS=0 SCAN_US=0 LEFT_AT_LIVE_GONE=()
while :; do
    a=$EPOCHREALTIME
    scan_ns
    now_us
    SCANS=$((SCANS + 1)) SCAN_US=$((SCAN_US + NOW_US - 10#${a//[.,]/}))
    if [ -z "$BG_GONE_US" ] && ! alive "$BG_PID"; then BG_GONE_US=$NOW_US; fi
    if [ -z "$LIVE_GONE_US" ] && [ "$NS_LIVE" = 0 ]; then
        LIVE_GONE_US=$NOW_US
        # What is left then (zombies): pid, state and parent, from /proc/PID/stat.
        for p in "${NS_PIDS[@]}"; do
            st=
            { read -r st; } 2>/dev/null <"/proc/$p/stat" || true
            st=${st##*) }
            LEFT_AT_LIVE_GONE+=("pid $p state ${st%% *} ppid $(cut -d' ' -f2 <<<"$st")")
        done
    fi
    if [ "$NS_ALL" = 0 ]; then ALL_GONE_US=$NOW_US; break; fi
    [ $((NOW_US - KILL_US)) -lt 30000000 ] || break
    nap 0.005
done
SUP_RC=0
wait "$SUP_PID" || SUP_RC=$?
SUP_PID=
wait "$BG_PID" || BG_RC=$?
BG_PID=
exec {NS_FD}<&-
NS_FD=
ms() { if [ -n "$1" ]; then awk -v d=$(($1 - KILL_US)) 'BEGIN { printf "%.1f ms", d / 1000 }'; else echo "not within 30 s"; fi; }
ports_left=$(ss -Htln "sport = :$PORT" | wc -l)

echo
echo "part 3: SIGKILL of the supervisor under load"
figure "tenant PID namespace" "$NS_NAME"
figure "its processes before the kill" "$BEFORE_ALL ($BACKENDS pgbench backends; the one with supervise's command line is the init stub, PID 1 of the namespace)"
printf '    %s\n' "${BEFORE_LIST//$'\n'/$'\n'    }"
figure "kill -KILL supervise -> no live process" "$(ms "$LIVE_GONE_US")"
figure "kill -KILL supervise -> no process at all" "$(ms "$ALL_GONE_US") (zombies reaped)"
figure "zombies left at that moment" "${#LEFT_AT_LIVE_GONE[@]}"
[ ${#LEFT_AT_LIVE_GONE[@]} = 0 ] || printf '    %s\n' "${LEFT_AT_LIVE_GONE[@]}"
figure "kill -KILL supervise -> pgbench exits" "$(ms "$BG_GONE_US") (its clients see the connections die)"
figure "polls" "$SCANS, every 5 ms + a scan of $((SCAN_US / (SCANS > 0 ? SCANS : 1))) µs"
figure "supervise exit status" "$SUP_RC (137 = SIGKILL)"
figure "pgbench under load" "exit $BG_RC, $(grep -c 'aborted in command' "$WORK/pgbench-kill.out" || true) of 8 clients aborted (backend died), $(sed -n 's/^number of transactions actually processed: //p' "$WORK/pgbench-kill.out") transactions before the kill"
figure "listeners left on :$PORT" "$ports_left"
check "no process of the tenant left within 30 s" test -n "$ALL_GONE_US"
if [ -z "$ALL_GONE_US" ]; then
    ps -o pid=,stat=,args= -p "$(
        IFS=,
        echo "${NS_PIDS[*]}"
    )" || true
fi

say "start the data directory bare (no supervise): crash recovery"
t=$EPOCHREALTIME
setpriv --reuid=postgres --regid=postgres --init-groups -- \
    "$PG_BIN/postgres" -D "$WORK/data" -k "$WORK" -c listen_addresses=127.0.0.1 -p "$PORT" \
    </dev/null >"$WORK/bare.out" 2>"$WORK/bare.log" &
BARE_PID=$!
wait_pg_ready "$BARE_PID" "$PORT" "$WORK/bare.log"
READY_SECS=$(secs "$t")
echo
echo "  bare start: ready in $READY_SECS s; its log:"
# (pg_isready's probes while it starts, as root, log FATALs of their own: left out)
grep -E 'interrupted|not properly shut down|redo|ready to accept|checkpoint complete|FATAL|PANIC|ERROR' \
    "$WORK/bare.log" | grep -vE 'is starting up|not yet accepting connections|role "root" does not exist' |
    sed 's/^/    /'
check "the bare server performed crash recovery (redo) and accepts connections" \
    grep -q 'redo done at\|redo is not required' "$WORK/bare.log"

DBS=$(one_value -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1")
for db in $DBS; do
    psql_unix -d "$db" -c 'CREATE EXTENSION IF NOT EXISTS amcheck'
done
t=$EPOCHREALTIME
AM_RC=0
"$PG_BIN/pg_amcheck" -h "$WORK" -p "$PORT" -U postgres --all --heapallindexed --parent-check \
    >"$WORK/amcheck.out" 2>&1 || AM_RC=$?
AM_SECS=$(secs "$t")
amcheck_clean() { [ "$AM_RC" = 0 ] && [ ! -s "$WORK/amcheck.out" ]; }
echo
figure "pg_amcheck --all --heapallindexed --parent-check" "exit $AM_RC in $AM_SECS s, $(wc -l <"$WORK/amcheck.out") lines of output (databases: $(echo "$DBS" | tr '\n' ' '))"
head -n 40 "$WORK/amcheck.out" | sed 's/^/    /'
check "pg_amcheck: exit 0, no corruption reported" amcheck_clean

echo "  full count(*) of every table:"
COUNT_RC=0
for db in $DBS; do
    psql_unix -d "$db" -At -F ' ' <<SQL >"$WORK/counts.$db" 2>&1 || COUNT_RC=$?
SELECT format('SELECT %L, count(*) FROM %s', '$db.' || n.nspname || '.' || c.relname, c.oid::regclass)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') ORDER BY n.nspname, c.relname \gexec
SQL
    awk '$1 !~ /\.(pg_catalog|information_schema)\./ { printf "    %-40s %s\n", $1, $2 }' "$WORK/counts.$db"
    echo "    ($db: $(grep -c '' "$WORK/counts.$db") tables counted, catalogs included)"
done
check "count(*) of every table in every database succeeded" test "$COUNT_RC" = 0
INV=$(one_value -d postgres -F ' ' -c 'SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT coalesce(sum(delta), 0) FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts)')
read -r SUM_A SUM_H N_ACC <<<"$INV"
figure "pgbench sum(abalance) / sum(delta)" "$SUM_A / $SUM_H (accounts: $N_ACC)"
check "pgbench invariant: sum(abalance) = sum(history delta)" test "$SUM_A" = "$SUM_H"
check "pgbench_accounts holds 1000000 rows" test "$N_ACC" = 1000000
# Every transaction pgbench saw committed is durable (one history row each); a COMMIT
# whose answer the kill cut off may be durable without pgbench having counted it: at
# most one per client.
N_HIST=$(one_value -d postgres -c 'SELECT count(*) FROM pgbench_history')
N_KILL=$(sed -n 's/^number of transactions actually processed: //p' "$WORK/pgbench-kill.out")
N_COUNTED=$((${XACTS:-0} + ${N_KILL:-0}))
figure "pgbench_history rows" "$N_HIST; transactions pgbench counted: ${XACTS:-?} (part 2) + ${N_KILL:-?} (before the kill) = $N_COUNTED"
check "every counted transaction survived: counted <= history rows <= counted + 8" \
    test "$N_HIST" -ge "$N_COUNTED" -a "$N_HIST" -le $((N_COUNTED + 8))
T_SHA=$(psql_unix -d postgres -c 'COPY (SELECT id, a, b, c FROM t ORDER BY id) TO STDOUT' | sha256sum | cut -d' ' -f1)
figure "SHA-256 of t after recovery" "$T_SHA"
check "t after recovery = what went in (part 1)" test "$T_SHA" = "$IN_SHA"

say "stop the bare server"
stop_pid "$BARE_PID" 60
BARE_PID=
check "the bare server stopped cleanly" test "$STOP_RC" = 0

echo
echo "soak.sh: $(secs "$SCRIPT_T0") s in all; load average now $(cut -d" " -f1-3 /proc/loadavg)"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "${#FAILED[@]} check(s) FAILED:"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
echo "all checks passed"
