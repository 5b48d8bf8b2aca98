# Part (i) of scripts/bench.sh (sourced by it; uses its helpers and knobs, and part
# (h)'s cm_start/cm_stop/cm_notifications): the supervisor's own system calls per
# notification it services (issue 14: "no avoidable syscalls per notification"). Prints,
# never asserts; counts, not timings, so it is meaningful on a noisy machine.
#
# (i) syscalls: for each mode in SC_MODES and each pgbench row in SC_ROWS, a fixed
#     number of transactions (SC_TXS per client) with `perf trace -s` attached to the
#     supervise process (every thread); prints, per row, the supervisor's syscalls by
#     name divided by the notifications it serviced in that run (its own counters).
# Knobs: SC_MODES ["identity pg-demo"]   SC_ROWS ["S4 N4"]   SC_TXS [1000]
# shellcheck shell=bash

SC_MODES=${SC_MODES:-identity pg-demo}
SC_ROWS=${SC_ROWS:-S4 N4}
SC_TXS=${SC_TXS:-1000}

# sc_families STATE: "family count" per notification family serviced so far.
sc_families() {
    "$SUPERVISE" --state-dir "$1" ctl metrics 2>/dev/null |
        sed -n 's/^supervise_notifications_total{.*family="\([a-z_-]*\)".* \([0-9]*\)$/\1 \2/p' | sort
}

# sc_sum FILE: "name calls" per syscall, summed over the threads of a perf trace -s
# summary.
sc_sum() {
    awk '$1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && $4 ~ /^[0-9.]+$/ { n[$1] += $2 }
         END { for (k in n) print k, n[k] }' "$1" | sort -k2,2nr
}

bench_syscalls() {
    hdr "(i) syscalls: the supervisor's system calls per serviced notification (perf trace -s)"
    ensure_postgres
    command -v perf >/dev/null || die "perf is not installed (Debian: linux-perf)"
    perf trace -s -- true >/dev/null 2>&1 || die "perf trace does not work here (needs tracepoints and root)"
    ensure_port_free "$PG_PORT"
    CM_DIR=$WORK/syscalls
    mkdir -p "$CM_DIR"
    chown postgres "$CM_DIR"
    init_cluster "$CM_DIR"
    cm_start bare "$WORK/syscalls-state-init" "$CM_DIR/init.log"
    pgb -i -s "$PG_SCALE" -q >>"$CM_DIR/init.log" 2>&1 || { cat "$CM_DIR/init.log" >&2; die "pgbench -i failed"; }
    pg_stop
    local mode row args state trace n0 n1 notes tracer clients
    for mode in $SC_MODES; do
        state=$WORK/syscalls-state-$mode
        mkdir -p "$state"
        cm_start "$mode" "$state" "$CM_DIR/$mode.log"
        for row in $SC_ROWS; do
            read -r -a args <<<"$(cm_row_args "$row")"
            trace=$CM_DIR/trace-$mode-$row.txt
            "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n "${args[@]}" -t 50 postgres >/dev/null 2>&1 || true
            n0=$(cm_notifications "$state")
            sc_families "$state" >"$CM_DIR/families0"
            perf trace -s -p "$CHILD_PID" -o "$trace" &
            tracer=$!
            sleep 1
            "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n "${args[@]}" -t "$SC_TXS" postgres \
                >"$CM_DIR/pgbench-$mode-$row.out" 2>&1 || FAILED=1
            n1=$(cm_notifications "$state")
            sc_families "$state" >"$CM_DIR/families1"
            sleep 1
            kill -INT "$tracer" 2>/dev/null
            wait "$tracer" 2>/dev/null || true
            notes=$((n1 - n0))
            printf '\n  %s %s (pgbench %s -t %s): %s notifications serviced\n' \
                "$mode" "$row" "${args[*]}" "$SC_TXS" "$notes"
            printf '  notifications per transaction by family:'
            clients=$(sed -n 's/.*-c \([0-9]*\).*/\1/p' <<<"${args[*]}")
            join "$CM_DIR/families0" "$CM_DIR/families1" | awk -v t="$((SC_TXS * clients))" '
                { d = $3 - $2; if (d > 0) printf " %s %.2f", $1, d / t } END { print "" }'
            printf '  %-22s %10s %14s\n' syscall calls per-notification
            sc_sum "$trace" | awk -v n="$notes" '
                { t += $2; if (NR <= 12) printf "  %-22s %10d %14.3f\n", $1, $2, (n > 0 ? $2 / n : 0) }
                END { printf "  %-22s %10d %14.3f\n", "(all)", t, (n > 0 ? t / n : 0) }'
        done
        cm_stop
    done
    echo "  (perf trace attaches 1 s before the run and detaches 1 s after it: the idle loop's"
    echo "   own calls in those 2 s are included; the notification count is exact)"
}
