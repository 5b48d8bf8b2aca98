#!/usr/bin/env bash
# `just bench`: side-by-side measurements in one run. Prints, never asserts.
#
# (a) ping-pong: microseconds per 64-byte round trip on a socket the tenant accepted,
#     for three variants run interleaved RUNS times (median of the per-run medians):
#       bare      pingpong_server run directly
#       floor     supervise run --continue-all -- pingpong_server   (notify + CONTINUE)
#       serviced  supervise run --profile bench/pingpong.toml -- pingpong_server
#                 (port tracked, raw framer, no rules: every read/write serviced)
#     Each round trip costs the server one read(2) and one write(2), so two intercepted
#     syscalls. Measured unpinned and with everything pinned to CPU 0 (BENCH_PIN).
# (b) pgbench -S TPS against PostgreSQL bare, under --continue-all (the floor), under
#     supervise run --profile profiles/postgres.toml (identity) and under
#     supervise run --profile profiles/pg-demo.toml (postgres framer + SQL rules: the
#     demo's rewrite/mask/deny/drop-session; pgbench's tables are not named by them, so
#     every statement is framed, parsed and checked but none is changed), interleaved.
# (c) what confinement costs: one cluster of the tenant pg-a run bare, under supervise
#     unconfined and confined (profiles/tenants/pg-a.toml), pgbench -S with kept and
#     with per-transaction connections (scripts/bench_tenants.sh).
# (d) the engine under pressure (scripts/bench_pressure.sh, its knobs PR_* are listed
#     there): 1000 connections opened and drained through the tracked port, supervisor
#     CPU per connection; pgbench -S -C -c 4, -c 200 and -c 1000 (TPS and connection
#     time); 2000 threads parked in recv (supervisor CPU while they wait, wake time).
#     Bare vs profiles/postgres.toml vs profiles/pg-demo.toml (bench/parked.toml for
#     the parked threads), same run.
# (e) diag (scripts/bench_diag.sh, knobs DG_*): pgbench -S under profiles/pg-demo.toml
#     with diagnostics off (SUPERVISE_LOG=warn, human log to /dev/null) vs on
#     (SUPERVISE_LOG=info, --log-format json to a file, one connection at debug via
#     a signed `supervise request … level`) vs bare, interleaved: on ÷ off, on ÷ bare, the JSON log's size.
# (f) ctl (scripts/bench_diag.sh, knobs CT_*): with 1000 idle tracked connections, one
#     client's transaction latency (p50/p99) while the control socket is idle vs while
#     100 `supervise ctl state` dumps (and `ctl list`s of all 1000) run back to back.
#     Alone: BENCH_PARTS=diag, BENCH_PARTS=ctl.
# (g) mirror (scripts/bench_mirror.sh, knobs MR_*): pgbench -S with the port tracked by
#     the raw framer (identity) vs the postgres framer vs the framer plus a mirror
#     (every Query whole, DataRow headers, to pcapng) vs bare, interleaved: mirror ÷
#     identity, messages mirrored per second, records dropped.
# (h) compare (scripts/bench_compare.sh, knobs CM_*): bare / floor / identity / pg-demo /
#     pgbouncer (session mode) on one cluster, rows -S -c 1, -S -c 4, -N -c 4, -S -C -c 4,
#     -S -c 64; notifications and supervisor CPU per transaction.
# (i) syscalls (scripts/bench_syscalls.sh, knobs SC_*): the supervisor's system calls
#     per serviced notification, by name (perf trace -s), identity and pg-demo, -S and
#     -N -c 4. Not in the default parts (it needs perf): BENCH_PARTS=syscalls.
#
# Needs root and release builds (just bench builds them). Installs postgresql-15 if
# missing. Environment knobs (defaults in brackets):
#   BENCH_PARTS ["pingpong pgbench tenants pressure diag ctl mirror compare"]   BENCH_PIN [both: unpinned, pinned | 0 | 1]
#   BENCH_BIN_DIR [target/release] where supervise and the testbins are taken from, e.g.
#     BENCH_BIN_DIR=/work/before-bin BENCH_PARTS=pressure scripts/bench.sh measures a
#     saved build (it overrides REL and SUPERVISE)
#   BENCH_SYNC [0]; 1 adds floor and serviced rows run with --sync-wakeup
#   PP_N [20000] round trips per run   PP_WARMUP [1000]   RUNS [3]
#   PG_SCALE [10]   PG_SECONDS [15]   PG_ROUNDS [2]   PG_CLIENTS [4]   PG_JOBS [2]
#   PG_VARIANTS ["floor supervised pg-demo"]; also supervised-t0 (--notify-threads 0),
#     supervised-t2 (--notify-threads 2), supervised-sync (--sync-wakeup)
#   SUPERVISE_LOG [warn] supervisor log level during measurements (part (e) sets its own)
set -euo pipefail

if [ -n "${BENCH_BIN_DIR:-}" ]; then
    REL=$(cd "$BENCH_BIN_DIR" && pwd) || { echo "error: BENCH_BIN_DIR=$BENCH_BIN_DIR: no such directory" >&2; exit 1; }
    SUPERVISE=$REL/supervise
fi
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/bench_tenants.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_tenants.sh"
# shellcheck source=scripts/bench_pressure.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_pressure.sh"
# shellcheck source=scripts/bench_diag.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_diag.sh"
# shellcheck source=scripts/bench_mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_mirror.sh"
# shellcheck source=scripts/bench_compare.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_compare.sh"
# shellcheck source=scripts/bench_syscalls.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_syscalls.sh"

BENCH_BIN_DIR=$REL
BENCH_PARTS=${BENCH_PARTS:-pingpong pgbench tenants pressure diag ctl mirror compare}
BENCH_PIN=${BENCH_PIN:-both}
BENCH_SYNC=${BENCH_SYNC:-0}
PP_PORT=7100 # must match bench/pingpong.toml
PP_N=${PP_N:-20000}
PP_WARMUP=${PP_WARMUP:-1000}
RUNS=${RUNS:-3}
PG_PORT=5432 # must match profiles/postgres.toml and profiles/pg-demo.toml
PG_SCALE=${PG_SCALE:-10}
PG_SECONDS=${PG_SECONDS:-15}
PG_ROUNDS=${PG_ROUNDS:-2}
PG_CLIENTS=${PG_CLIENTS:-4}
PG_JOBS=${PG_JOBS:-2}
PG_VARIANTS=${PG_VARIANTS:-floor supervised pg-demo}
export SUPERVISE_LOG=${SUPERVISE_LOG:-warn}

require_root
require_release_bins "$REL/pingpong_server" "$REL/pingpong_client"

WORK=$(mktemp -d /tmp/supervise-bench.XXXXXX)
chmod 0755 "$WORK" # PGDIR inside it belongs to postgres
CHILD_PID=
FAILED=0
cleanup() {
    local rc=$?
    local p
    for p in "${BG_PIDS[@]}"; do # clients of parts (e) and (f) (scripts/bench_diag.sh)
        alive "$p" && stop_pid "$p" 10
    done
    if [ -n "$CHILD_PID" ] && alive "$CHILD_PID"; then
        stop_pid "$CHILD_PID" 20
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# hdr: a section header on stdout (with the tables, for `just bench | tee`).
hdr() { printf '\n== %s\n' "$*"; }

# median of the numbers on stdin ("FAIL" entries ignored); prints "n/a" if none.
median() {
    grep -E '^[0-9.]+$' | sort -g | awk '{v[NR]=$1} END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) printf "%.2f\n", v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2 }'
}
# ratio A B: A/B with two decimals, or n/a.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a/b; else printf "n/a" }'
}
# diff_half A B: (A-B)/2 with two decimals, or n/a (per intercepted syscall).
diff_half() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/) printf "%.2f", (a-b)/2; else printf "n/a" }'
}

# ---------------------------------------------------------------- (a) ping-pong
# pp_once VARIANT PIN: one run; prints the client's median µs, or FAIL.
pp_once() {
    local variant=$1 pin=$2 log=$WORK/pp-$1.log out
    local pre=()
    [ "$pin" = 1 ] && pre=(taskset -c 0)
    ensure_port_free "$PP_PORT" >&2
    case $variant in
    bare) "${pre[@]}" "$REL/pingpong_server" "$PP_PORT" >/dev/null 2>>"$log" </dev/null & ;;
    floor) "${pre[@]}" "$SUPERVISE" run --continue-all -- \
        "$REL/pingpong_server" "$PP_PORT" >/dev/null 2>>"$log" </dev/null & ;;
    serviced) "${pre[@]}" "$SUPERVISE" run --profile "$ROOT/bench/pingpong.toml" -- \
        "$REL/pingpong_server" "$PP_PORT" >/dev/null 2>>"$log" </dev/null & ;;
    floor+sync) "${pre[@]}" "$SUPERVISE" run --continue-all --sync-wakeup -- \
        "$REL/pingpong_server" "$PP_PORT" >/dev/null 2>>"$log" </dev/null & ;;
    serviced+sync) "${pre[@]}" "$SUPERVISE" run --sync-wakeup --profile "$ROOT/bench/pingpong.toml" -- \
        "$REL/pingpong_server" "$PP_PORT" >/dev/null 2>>"$log" </dev/null & ;;
    *) die "unknown variant $variant" ;;
    esac
    CHILD_PID=$!
    if out=$("${pre[@]}" "$REL/pingpong_client" "$PP_PORT" "$PP_N" "$PP_WARMUP" 2>>"$log"); then
        stop_pid "$CHILD_PID" 10 # normally already gone: the server exits at EOF
        CHILD_PID=
        sed -n 's/.*rtt_us_median=\([0-9.]*\).*/\1/p' <<<"$out"
    else
        stop_pid "$CHILD_PID" 10
        CHILD_PID=
        echo "ping-pong $variant (pin=$pin) failed; last lines of its log:" >&2
        tail -n 15 "$log" >&2
        echo FAIL
        return 1
    fi
}

pp_table() {
    local pin=$1 v r
    local -A res=()
    local variants=(bare floor serviced)
    [ "$BENCH_SYNC" = 1 ] && variants+=(floor+sync serviced+sync)
    for _ in $(seq "$RUNS"); do
        for v in "${variants[@]}"; do
            r=$(pp_once "$v" "$pin") || FAILED=1
            res[$v]+="$r "
        done
    done
    local label="unpinned"
    [ "$pin" = 1 ] && label="all pinned to CPU 0"
    printf '\nping-pong, 64-byte round trips, %s: %s runs x %s round trips (+%s warm-up), interleaved\n' \
        "$label" "$RUNS" "$PP_N" "$PP_WARMUP"
    printf '%-14s %-30s %12s %16s\n' variant "per-run medians (µs)" "median µs" "+µs/syscall"
    local m extra
    local -A med=()
    med[bare]=$(tr ' ' '\n' <<<"${res[bare]}" | median)
    for v in "${variants[@]}"; do
        m=$(tr ' ' '\n' <<<"${res[$v]}" | median)
        med[$v]=$m
        extra=-
        [ "$v" = bare ] || extra=$(diff_half "$m" "${med[bare]}")
        printf '%-14s %-30s %12s %16s\n' "$v" "${res[$v]}" "$m" "$extra"
    done
    printf 'serviced ÷ floor = %s   (floor ÷ bare = %s, serviced ÷ bare = %s)\n' \
        "$(ratio "${med[serviced]}" "${med[floor]}")" "$(ratio "${med[floor]}" "${med[bare]}")" \
        "$(ratio "${med[serviced]}" "${med[bare]}")"
    if [ "$BENCH_SYNC" = 1 ]; then
        printf 'with --sync-wakeup: serviced ÷ floor = %s\n' \
            "$(ratio "${med[serviced+sync]}" "${med[floor+sync]}")"
    fi
    printf '(+µs/syscall: (variant - bare) / 2, the server makes two intercepted calls per round trip)\n'
}

bench_pingpong() {
    hdr "(a) ping-pong: bare / floor (notify + CONTINUE) / serviced"
    case $BENCH_PIN in
    0) pp_table 0 ;;
    1) pp_table 1 ;;
    *) pp_table 0; pp_table 1 ;;
    esac
}

# ---------------------------------------------------------------- (b) pgbench
PGDIR=$WORK/pg
pg_start() { # pg_start bare|VARIANT (see PG_VARIANTS)
    local mode=$1 log=$PGDIR/$1.log
    ensure_port_free "$PG_PORT"
    cd "$PGDIR"
    if [ "$mode" = bare ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- \
            "$PG_BIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -c listen_addresses=127.0.0.1 \
            -p "$PG_PORT" </dev/null >>"$log" 2>&1 &
    else
        local args
        read -r -a args <<<"$(variant_args "$mode")"
        "$SUPERVISE" run "${args[@]}" -- \
            "$PG_BIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -c listen_addresses=127.0.0.1 \
            -p "$PG_PORT" </dev/null >>"$log" 2>&1 &
    fi
    CHILD_PID=$!
    cd "$ROOT"
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$log"
}
pg_stop() {
    stop_pid "$CHILD_PID" 30
    CHILD_PID=
    [ "$STOP_RC" = 0 ] || echo "warning: server exited with status $STOP_RC" >&2
}
# variant_args VARIANT: the supervise run options of a pgbench variant.
variant_args() {
    local base="--profile $ROOT/profiles/postgres.toml"
    case $1 in
    supervised) echo "$base" ;;
    floor) echo "$base --continue-all" ;;
    supervised-t0) echo "$base --notify-threads 0" ;;
    supervised-t2) echo "$base --notify-threads 2" ;;
    supervised-sync) echo "$base --sync-wakeup" ;;
    pg-demo) echo "--profile $ROOT/profiles/pg-demo.toml" ;;
    *) die "unknown pgbench variant $1" ;;
    esac
}
pgb() { "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@" postgres; }

# pg_measure MODE: start, warm up 3 s, measure PG_SECONDS, stop; prints TPS or FAIL.
pg_measure() {
    local mode=$1 out tps
    pg_start "$mode" >&2
    pgb -S -c "$PG_CLIENTS" -j "$PG_JOBS" -T 3 >/dev/null 2>&1 || true
    if out=$(pgb -S -c "$PG_CLIENTS" -j "$PG_JOBS" -T "$PG_SECONDS" 2>&1); then
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | awk '{ printf "%.0f", $1 }')
        grep -q '^number of failed transactions: 0 ' <<<"$out" ||
            echo "warning ($mode): $(grep '^number of failed' <<<"$out")" >&2
    else
        echo "pgbench ($mode) failed:" >&2
        echo "$out" >&2
        tail -n 20 "$PGDIR/$mode.log" >&2
        tps=FAIL
    fi
    pg_stop >&2
    echo "${tps:-FAIL}"
}

bench_pgbench() {
    hdr "(b) pgbench -S: bare vs supervised (profiles/postgres.toml, identity) vs pg-demo (SQL rules)"
    ensure_postgres
    ensure_port_free "$PG_PORT"
    mkdir -p "$PGDIR"
    init_cluster "$PGDIR"
    echo "pgbench -i -s $PG_SCALE (bare server) ..." >&2
    pg_start bare >&2
    pgb -i -s "$PG_SCALE" -q >"$PGDIR/init.log" 2>&1 || { cat "$PGDIR/init.log" >&2; die "pgbench -i failed"; }
    pg_stop >&2

    local round v t
    local -A res=()
    for round in $(seq "$PG_ROUNDS"); do
        for v in bare $PG_VARIANTS; do
            t=$(pg_measure "$v") || true
            [ "$t" = FAIL ] && FAILED=1
            printf '  round %s %-16s %s tps\n' "$round" "$v:" "$t" >&2
            res[$v]+="$t "
        done
    done
    printf '\npgbench -S -c %s -j %s -T %s, scale %s, %s rounds, variants interleaved\n' \
        "$PG_CLIENTS" "$PG_JOBS" "$PG_SECONDS" "$PG_SCALE" "$PG_ROUNDS"
    printf '%-16s %-30s %12s %10s\n' mode "TPS per round" "median TPS" "÷ bare"
    local bm m
    bm=$(tr ' ' '\n' <<<"${res[bare]}" | median)
    for v in bare $PG_VARIANTS; do
        m=$(tr ' ' '\n' <<<"${res[$v]}" | median)
        printf '%-16s %-30s %12s %10s\n' "$v" "${res[$v]}" "$m" "$(ratio "$m" "$bm")"
    done
    printf '(floor = notify + CONTINUE, nothing serviced; supervised = identity profile, every\n'
    printf ' client-socket call serviced by the supervisor; pg-demo = profiles/pg-demo.toml, the\n'
    printf ' postgres framer and the demo rules on every message, no statement changed)\n'
}

# ---------------------------------------------------------------- main
hdr "supervise benchmarks: $(uname -r), $(nproc) CPUs, $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit'), $(date -u +%FT%TZ)"
printf 'binaries: %s (supervise: %s, modified %s)\n' "$BENCH_BIN_DIR" \
    "$("$SUPERVISE" --version 2>/dev/null || echo '?')" "$(date -u -r "$SUPERVISE" +%FT%TZ)"
for part in $BENCH_PARTS; do
    case $part in
    pingpong) bench_pingpong ;;
    pgbench) bench_pgbench ;;
    tenants) bench_tenants ;;
    pressure) bench_pressure ;;
    diag) bench_diag ;;
    ctl) bench_ctl ;;
    mirror) bench_mirror ;;
    compare) bench_compare ;;
    syscalls) bench_syscalls ;;
    *) die "unknown part $part in BENCH_PARTS" ;;
    esac
done
if [ "$FAILED" != 0 ]; then
    echo
    echo "some measurements FAILED (see the messages above)" >&2
    exit 1
fi
