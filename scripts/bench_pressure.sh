# Part (d) of scripts/bench.sh (sourced by it; uses its helpers and knobs): the engine
# under pressure (issue 9). Every row runs bare and supervised in the same run and
# prints ratios; nothing asserts. A phase that runs out of time (PR_TIMEOUT) is
# reported as "> N s (timed out)".
#
# One PostgreSQL 15 cluster (max_connections PR_MAX_CONN, shared_buffers 16MB,
# autovacuum off, trust auth, 127.0.0.1:5432 and a unix socket), started once per mode:
#   bare        postgres run directly as the postgres user
#   supervised  supervise run --profile profiles/postgres.toml (identity)
#   pg-demo     supervise run --profile profiles/pg-demo.toml (postgres framer + rules)
# (PR_VARIANTS picks the supervised modes.) In each mode, in this order:
#   flood    conn_flood: PR_CONNS connections opened through the tracked port by
#            PR_FLOOD_THREADS threads (each opens its share one after another:
#            StartupMessage, read to ReadyForQuery); open = until all are ready. Then
#            all are closed (Terminate + close) and drain = until every backend has
#            exited and been reaped (the postmaster's children back to the count before
#            the flood); drain(activity) = until pg_stat_activity shows no client
#            backend (polled every 10 ms over the unix socket, which no profile
#            tracks). Supervisor CPU = utime+stime of the supervise process
#            (/proc/PID/stat) from before the first connect to after the drain, once the
#            supervisor is idle again, divided by the connections opened.
#   pgbench  pgbench -S -j 2 with -C -c 4 (a connection per transaction), -c 200 and
#            -c 1000 (PR_PGB_ROWS): TPS, pgbench's initial (or, with -C, average)
#            connection time, the supervisor's CPU over the run, and how long the server
#            took to be rid of the backends after pgbench exited (same measure as
#            drain). pgbench's -T includes its connection time, its TPS does not: -T is
#            PR_PGB_SECONDS plus the expected connection time (see pr_pgbench), so
#            every mode runs transactions for about PR_PGB_SECONDS.
# Then, without PostgreSQL:
#   parked   parked_threads (the tenant: PR_PARK_CONNS connections on port PR_PARK_PORT,
#            each with its own thread blocked in recv; bench/parked.toml tracks the port,
#            raw framer) and parked_client, bare vs supervised. setup = connect all,
#            until every thread has sent its "about to block" byte and the kernel shows
#            PR_PARK_CONNS of its threads in recvfrom (/proc/PID/task/*/syscall); after
#            PR_PARK_SETTLE s, the supervisor's CPU over PR_PARK_IDLE s of waiting (% of
#            one core); 1 wake = latency of one wake (1 byte sent, until its echo) on
#            PR_PARK_SERIAL connections one after another while the others stay parked;
#            wake = the client sends 1 byte on every connection, until every thread has
#            echoed it; close = all closed, until the tenant has exited.
#
# Knobs (defaults in brackets):
#   PR_ROWS ["flood pgbench parked"]   PR_VARIANTS ["supervised pg-demo"]   PR_ROUNDS [1]
#   PR_CONNS [1000]   PR_FLOOD_THREADS [4]   PR_MAX_CONN [max(1100, PR_CONNS+100)]
#   PR_PGB_ROWS ["C4 c200 c1000"] (Cn: -C -c n; cn: -c n)   PR_PGB_SECONDS [10]   PR_SCALE [1]
#   PR_PARK_CONNS [2000]   PR_PARK_IDLE [5]   PR_PARK_SETTLE [1]   PR_PARK_SERIAL [100]
#   PR_TIMEOUT [180] seconds allowed per phase (open, drain, pgbench beyond -T, setup,
#     wake, close)
# Needs RLIMIT_NOFILE well above 2 × PR_PARK_CONNS (the hard limit is used: `ulimit -Hn`).
# shellcheck shell=bash disable=SC2034  # FAILED is read by bench.sh

PR_ROWS=${PR_ROWS:-flood pgbench parked}
PR_VARIANTS=${PR_VARIANTS:-supervised pg-demo}
PR_ROUNDS=${PR_ROUNDS:-1}
PR_CONNS=${PR_CONNS:-1000}
PR_FLOOD_THREADS=${PR_FLOOD_THREADS:-4}
PR_MAX_CONN=${PR_MAX_CONN:-$((PR_CONNS + 100 > 1100 ? PR_CONNS + 100 : 1100))}
PR_PGB_ROWS=${PR_PGB_ROWS:-C4 c200 c1000}
PR_PGB_SECONDS=${PR_PGB_SECONDS:-10}
PR_SCALE=${PR_SCALE:-1}
PR_PARK_CONNS=${PR_PARK_CONNS:-2000}
PR_PARK_IDLE=${PR_PARK_IDLE:-5}
PR_PARK_SETTLE=${PR_PARK_SETTLE:-1}
PR_PARK_SERIAL=${PR_PARK_SERIAL:-100}
PR_PARK_PORT=7200 # must match bench/parked.toml
PR_TIMEOUT=${PR_TIMEOUT:-180}

PR_DIR=
declare -A PR_HINT=() # mode -> the flood's open time (s), a hint for pgbench's -T
PR_PM=
PR_NOFILE=

# pr_cpu PID: utime+stime of PID in clock ticks, or nothing.
pr_cpu() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    st=${st##*) }
    awk '{ print $12 + $13 }' <<<"$st"
}
# pr_cpu_s T0 T1: seconds between two tick counts, or "-".
pr_cpu_s() {
    awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) printf "%.2f", (b-a)/hz; else printf "-" }'
}

# pr_find_comm PID COMM: PID or its first descendant (breadth first) named COMM.
pr_find_comm() {
    local queue=("$1") p kids
    while [ ${#queue[@]} -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && { echo "$p"; return 0; }
        kids=$(cat "/proc/$p"/task/*/children 2>/dev/null) || true
        # shellcheck disable=SC2206  # pids: split on whitespace
        queue+=($kids)
    done
    return 1
}

# pr_backends PM: children of the postmaster PM other than its auxiliary processes
# (backends, including exiting ones and zombies not yet reaped).
pr_backends() {
    local pm=$1 c n=0 title
    # shellcheck disable=SC2013  # the file is one line of pids
    for c in $(cat "/proc/$pm/task/$pm/children" 2>/dev/null); do
        title=
        { read -r -d '' title <"/proc/$c/cmdline"; } 2>/dev/null || true
        case $title in
        "postgres: checkpointer"* | "postgres: background writer"* | "postgres: walwriter"* | \
            "postgres: autovacuum launcher"* | "postgres: logical replication launcher"* | \
            "postgres: archiver"* | "postgres: stats"*) ;;
        *) n=$((n + 1)) ;;
        esac
    done
    echo "$n"
}

# pr_wait_drained TIMEOUT: until the postmaster has no backend child; prints seconds
# waited, or "timeout".
pr_wait_drained() {
    local t0 now
    t0=$(date +%s.%N)
    while :; do
        now=$(date +%s.%N)
        if [ "$(pr_backends "$PR_PM")" = 0 ]; then
            awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.2f", b-a }'
            return 0
        fi
        if awk -v a="$t0" -v b="$now" -v t="$1" 'BEGIN { exit !(b-a > t) }'; then
            echo timeout
            return 0
        fi
        sleep 0.05
    done
}

# pr_pg_start MODE: starts the pressure cluster in MODE (bare or a variant_args
# variant) with RLIMIT_NOFILE at its hard limit; sets CHILD_PID and PR_PM.
pr_pg_start() {
    local mode=$1 log=$PR_DIR/$1.log
    local pg=("$PG_BIN/postgres" -D "$PR_DIR/data" -k "$PR_DIR" -p "$PG_PORT"
        -c listen_addresses=127.0.0.1 -c "max_connections=$PR_MAX_CONN"
        -c shared_buffers=16MB -c autovacuum=off)
    ensure_port_free "$PG_PORT"
    cd "$PR_DIR" || die "cd $PR_DIR"
    if [ "$mode" = bare ]; then
        (ulimit -n "$PR_NOFILE" && exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
            "${pg[@]}") </dev/null >>"$log" 2>&1 &
    else
        local args
        read -r -a args <<<"$(variant_args "$mode")"
        (ulimit -n "$PR_NOFILE" && exec "$SUPERVISE" run "${args[@]}" -- "${pg[@]}") \
            </dev/null >>"$log" 2>&1 &
    fi
    CHILD_PID=$!
    cd "$ROOT" || die "cd $ROOT"
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$log"
    PR_PM=$(pr_find_comm "$CHILD_PID" postgres) || die "$mode: no postmaster under pid $CHILD_PID"
    [ "$(pr_wait_drained 30)" != timeout ] || die "$mode: backends left after start"
}

pr_pg_stop() {
    stop_pid "$CHILD_PID" 60
    CHILD_PID=
    PR_PM=
    [ "$STOP_RC" = 0 ] || echo "warning: server exited with status $STOP_RC" >&2
}

# pr_kv KEY LINE: the value of KEY=... in LINE.
pr_kv() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# pr_flood MODE: one conn_flood run against the running cluster; prints its line or FAIL.
pr_flood() {
    local mode=$1 out cpu=()
    [ "$mode" = bare ] || cpu=(--cpu-pid "$CHILD_PID")
    if out=$(ulimit -n "$PR_NOFILE" && timeout --kill-after=10 $((2 * PR_TIMEOUT + 120)) \
        "$REL/conn_flood" --port "$PG_PORT" --conns "$PR_CONNS" --threads "$PR_FLOOD_THREADS" \
        --unix "$PR_DIR/.s.PGSQL.$PG_PORT" --postmaster-pid "$PR_PM" "${cpu[@]}" \
        --open-timeout "$PR_TIMEOUT" --drain-timeout "$PR_TIMEOUT" \
        --timeout-secs $((2 * PR_TIMEOUT + 100)) 2>"$PR_DIR/flood-$mode.err"); then
        echo "$out"
    else
        echo "conn_flood ($mode) failed:" >&2
        tail -n 5 "$PR_DIR/flood-$mode.err" >&2
        echo FAIL
    fi
}

# pr_pgbench_once T OPTS...: one pgbench -S -j 2 -T T OPTS run; sets PGB_RC, PGB_OUT,
# PGB_WALL (seconds), PGB_TPS and PGB_CONN_MS (empty when pgbench printed none).
PGB_RC=''
PGB_OUT=''
PGB_WALL=''
PGB_TPS=''
PGB_CONN_MS=''
pr_pgbench_once() {
    local t=$1 t0
    shift
    t0=$(date +%s.%N)
    PGB_RC=0
    PGB_OUT=$(ulimit -n "$PR_NOFILE" && timeout --kill-after=10 $((t + PR_TIMEOUT)) \
        "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -S "$@" -j 2 -T "$t" \
        postgres 2>&1) || PGB_RC=$?
    PGB_WALL=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", b-a+0.999 }')
    PGB_TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$PGB_OUT" | awk '{ printf "%.0f", $1 }')
    PGB_CONN_MS=$(sed -n 's/^\(initial\|average\) connection time = \([0-9.]*\) ms.*/\2/p' <<<"$PGB_OUT")
}

# pr_pgbench MODE ROW: one pgbench row (C4, c200, ...) against the running cluster;
# prints "tps conn_ms cpu_s drain_s T", fields "-"/"timeout"/"FAIL" where not measured.
# pgbench's -T counts from before its clients connect, and its TPS from after: so -T
# is PR_PGB_SECONDS plus the expected connection time (the flood's open time in this
# mode × clients / PR_CONNS; nothing for -C rows), and when connecting still left less
# than half of PR_PGB_SECONDS for transactions (or none, so that no TPS was printed)
# the row is run again with -T PR_PGB_SECONDS + the connection time seen.
pr_pgbench() {
    local mode=$1 row=$2 opts=() tps conn c0 c1 drain t=$PR_PGB_SECONDS extra
    case $row in
    C*) opts=(-C -c "${row#C}") ;;
    c*)
        opts=(-c "${row#c}")
        # The flood's open time in this mode, scaled to the clients: the expected
        # connection time, added to -T.
        t=$((t + $(awk -v h="${PR_HINT[$mode]:-0}" -v c="${row#c}" -v n="$PR_CONNS" \
            'BEGIN { printf "%d", h * c / n + 0.999 }')))
        ;;
    *) die "unknown PR_PGB_ROWS entry $row" ;;
    esac
    c0=$(pr_cpu "$CHILD_PID")
    pr_pgbench_once "$t" "${opts[@]}"
    if [ "$PGB_RC" = 0 ] && [ "${opts[0]}" != -C ]; then
        extra=
        if [ -z "$PGB_TPS" ]; then
            extra=$PGB_WALL
        elif [ -n "$PGB_CONN_MS" ] &&
            awk -v c="$PGB_CONN_MS" -v t="$t" -v s="$PR_PGB_SECONDS" 'BEGIN { exit !(t - c / 1000 < s / 2) }'; then
            extra=$(awk -v c="$PGB_CONN_MS" 'BEGIN { printf "%d", c / 1000 + 0.999 }')
        fi
        if [ -n "$extra" ]; then
            echo "  ($mode $row: connecting took most of -T $t (initial connection time ${PGB_CONN_MS:-?} ms, run ${PGB_WALL} s): again with -T $((PR_PGB_SECONDS + extra)))" >&2
            pr_wait_drained "$PR_TIMEOUT" >/dev/null
            t=$((PR_PGB_SECONDS + extra))
            c0=$(pr_cpu "$CHILD_PID")
            pr_pgbench_once "$t" "${opts[@]}"
        fi
    fi
    drain=$(pr_wait_drained "$PR_TIMEOUT")
    c1=$(pr_cpu "$CHILD_PID")
    if [ "$PGB_RC" = 0 ]; then
        tps=$PGB_TPS conn=$PGB_CONN_MS
        grep -q '^number of failed transactions: 0 ' <<<"$PGB_OUT" ||
            echo "warning ($mode $row): $(grep '^number of failed' <<<"$PGB_OUT")" >&2
        [ -n "$tps" ] || { echo "pgbench ($mode $row) printed no TPS:" >&2; tail -n 12 <<<"$PGB_OUT" >&2; }
    elif [ "$PGB_RC" = 124 ] || [ "$PGB_RC" = 137 ]; then
        tps=timeout conn=timeout
    else
        echo "pgbench ($mode ${opts[*]} -T $t) failed (status $PGB_RC):" >&2
        tail -n 5 <<<"$PGB_OUT" >&2
        tps=FAIL conn=FAIL
    fi
    [ "$mode" = bare ] && c0='' c1=''
    echo "${tps:-FAIL} ${conn:--} $(pr_cpu_s "$c0" "$c1") $drain $t"
}

# pr_parked MODE: one parked_threads/parked_client run; prints the client's line or FAIL.
pr_parked() {
    local mode=$1 log=$PR_DIR/parked-$1.log tpid='' out _ cpu=()
    local tenant=("$REL/parked_threads" --port "$PR_PARK_PORT" --conns "$PR_PARK_CONNS"
        --timeout-secs $((4 * PR_TIMEOUT + 120)))
    ensure_port_free "$PR_PARK_PORT" >&2
    : >"$log"
    if [ "$mode" = bare ]; then
        (ulimit -n "$PR_NOFILE" && exec "${tenant[@]}") </dev/null >>"$log" 2>&1 &
    else
        (ulimit -n "$PR_NOFILE" && exec "$SUPERVISE" run --profile "$ROOT/bench/parked.toml" -- \
            "${tenant[@]}") </dev/null >>"$log" 2>&1 &
        cpu=(--cpu-pid "$!")
    fi
    CHILD_PID=$!
    for _ in $(seq 300); do
        tpid=$(sed -n 's/^ready pid=\([0-9]*\)$/\1/p' "$log")
        [ -n "$tpid" ] && break
        alive "$CHILD_PID" || break
        sleep 0.1
    done
    if [ -z "$tpid" ]; then
        echo "parked_threads ($mode) did not start:" >&2
        tail -n 10 "$log" >&2
        stop_pid "$CHILD_PID" 10 >&2
        CHILD_PID=
        echo FAIL
        return
    fi
    if out=$(ulimit -n "$PR_NOFILE" && timeout --kill-after=10 $((4 * PR_TIMEOUT + 60)) \
        "$REL/parked_client" --port "$PR_PARK_PORT" --conns "$PR_PARK_CONNS" \
        --tenant-pid "$tpid" "${cpu[@]}" --settle-secs "$PR_PARK_SETTLE" \
        --idle-secs "$PR_PARK_IDLE" --serial "$PR_PARK_SERIAL" --setup-timeout "$PR_TIMEOUT" \
        --wake-timeout "$PR_TIMEOUT" --close-timeout "$PR_TIMEOUT" \
        --timeout-secs $((4 * PR_TIMEOUT + 40)) 2>>"$log"); then
        echo "$out"
    else
        echo "parked_client ($mode) failed:" >&2
        tail -n 10 "$log" >&2
        echo FAIL
    fi
    stop_pid "$CHILD_PID" 30 >&2
    CHILD_PID=
}

# pr_med VALUES: median of the numeric values; "> PR_TIMEOUT s (timed out)" when none
# is numeric and one timed out; "-" or FAIL otherwise.
pr_med() {
    local m
    m=$(tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }')
    if [ "$m" != n/a ]; then
        echo "$m"
    elif grep -qw timeout <<<"$1"; then
        echo "> $PR_TIMEOUT s (timed out)"
    elif grep -qw FAIL <<<"$1"; then
        echo FAIL
    else
        echo -
    fi
}

bench_pressure() {
    hdr "(d) pressure: $PR_CONNS connections, pgbench ${PR_PGB_ROWS// /, }, $PR_PARK_CONNS parked threads: bare vs ${PR_VARIANTS// / vs }"
    local t_part=$SECONDS load0
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    PR_NOFILE=$(ulimit -Hn)
    [ "$PR_NOFILE" = unlimited ] && PR_NOFILE=1048576
    [ "$PR_NOFILE" -ge $((2 * PR_PARK_CONNS + 1000)) ] ||
        echo "warning: RLIMIT_NOFILE hard limit $PR_NOFILE is low for $PR_PARK_CONNS parked connections" >&2
    require_release_bins "$REL/conn_flood" "$REL/parked_threads" "$REL/parked_client"
    local round mode row line r v f
    local -A res=()
    local modes
    read -r -a modes <<<"bare $PR_VARIANTS"

    if [[ " $PR_ROWS " == *" flood "* || " $PR_ROWS " == *" pgbench "* ]]; then
        ensure_postgres
        PR_DIR=$WORK/pressure
        mkdir -p "$PR_DIR"
        init_cluster "$PR_DIR"
        echo "pgbench -i -s $PR_SCALE (bare server) ..." >&2
        pr_pg_start bare >&2
        "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s "$PR_SCALE" -q postgres \
            >"$PR_DIR/init.log" 2>&1 || { cat "$PR_DIR/init.log" >&2; die "pgbench -i failed"; }
        pr_pg_stop >&2
        for round in $(seq "$PR_ROUNDS"); do
            for mode in "${modes[@]}"; do
                pr_pg_start "$mode" >&2
                if [[ " $PR_ROWS " == *" flood "* ]]; then
                    line=$(pr_flood "$mode")
                    [ "$line" = FAIL ] && FAILED=1
                    printf '  round %s %-11s flood: %s\n' "$round" "$mode" "$line" >&2
                    v=$(pr_kv open_s "$line")
                    [[ $v =~ ^[0-9.]+$ ]] && PR_HINT[$mode]=$v
                    for r in open_s open_p50_ms open_p99_ms drain_s drain_activity_s cpu_us cpu_open_us cpu_close_us opened; do
                        v=$(pr_kv "$r" "$line")
                        res[flood-$mode-$r]+="${v:-FAIL} "
                    done
                    pr_wait_drained "$PR_TIMEOUT" >/dev/null
                fi
                if [[ " $PR_ROWS " == *" pgbench "* ]]; then
                    for row in $PR_PGB_ROWS; do
                        read -r -a f <<<"$(pr_pgbench "$mode" "$row")"
                        printf '  round %s %-11s pgbench %-6s tps %s, connection %s ms, supervisor CPU %s s, drained in %s s (-T %s)\n' \
                            "$round" "$mode" "$row" "${f[@]}" >&2
                        [ "${f[0]}" = FAIL ] && FAILED=1
                        res[pgb-$row-$mode-T]+="${f[4]} "
                        res[pgb-$row-$mode-tps]+="${f[0]} "
                        res[pgb-$row-$mode-conn]+="${f[1]} "
                        res[pgb-$row-$mode-cpu]+="${f[2]} "
                        res[pgb-$row-$mode-drain]+="${f[3]} "
                    done
                fi
                pr_pg_stop >&2
            done
        done
    fi

    if [[ " $PR_ROWS " == *" parked "* ]]; then
        for round in $(seq "$PR_ROUNDS"); do
            for mode in bare supervised; do
                line=$(pr_parked "$mode")
                [ "$line" = FAIL ] && FAILED=1
                printf '  round %s %-11s parked: %s\n' "$round" "$mode" "$line" >&2
                for r in setup_s idle_cpu_pct serial_p50_ms serial_p99_ms wake_s close_s; do
                    v=$(pr_kv "$r" "$line")
                    res[park-$mode-$r]+="${v:-FAIL} "
                done
            done
        done
    fi

    # ---- tables
    local b m bd md
    if [[ " $PR_ROWS " == *" flood "* ]]; then
        printf '\n%s connections to 127.0.0.1:%s (conn_flood, %s threads), then all closed; %s round(s), median\n' \
            "$PR_CONNS" "$PG_PORT" "$PR_FLOOD_THREADS" "$PR_ROUNDS"
        printf '%-11s %9s %7s %8s %8s %9s %7s %10s %11s %s\n' mode "open s" "÷ bare" "p50 ms" "p99 ms" \
            "drain s" "÷ bare" "drain(act)" "sup µs/conn" "(open + close)"
        b=$(pr_med "${res[flood-bare-open_s]}")
        bd=$(pr_med "${res[flood-bare-drain_s]}")
        for mode in "${modes[@]}"; do
            m=$(pr_med "${res[flood-$mode-open_s]}")
            md=$(pr_med "${res[flood-$mode-drain_s]}")
            printf '%-11s %9s %7s %8s %8s %9s %7s %10s %11s %s\n' "$mode" "$m" "$(ratio "$m" "$b")" \
                "$(pr_med "${res[flood-$mode-open_p50_ms]}")" "$(pr_med "${res[flood-$mode-open_p99_ms]}")" \
                "$md" "$(ratio "$md" "$bd")" "$(pr_med "${res[flood-$mode-drain_activity_s]}")" \
                "$(pr_med "${res[flood-$mode-cpu_us]}")" \
                "($(pr_med "${res[flood-$mode-cpu_open_us]}") + $(pr_med "${res[flood-$mode-cpu_close_us]}"))"
        done
        printf '(open: until all %s sessions had ReadyForQuery; drain: from the first Terminate until\n' "$PR_CONNS"
        printf ' every backend had exited and been reaped; drain(act): until pg_stat_activity showed\n'
        printf ' no client backend; sup µs/conn: supervise utime+stime over open + drain ÷ connections)\n'
    fi
    if [[ " $PR_ROWS " == *" pgbench "* ]]; then
        printf '\npgbench -S -j 2 -T (%s s + connection time), scale %s, max_connections %s; %s round(s), median\n' \
            "$PR_PGB_SECONDS" "$PR_SCALE" "$PR_MAX_CONN" "$PR_ROUNDS"
        printf '%-10s %-11s %9s %7s %12s %7s %9s %9s %5s\n' clients mode TPS "÷ bare" "conn ms" "÷ bare" \
            "sup CPU s" "drain s" "-T"
        for row in $PR_PGB_ROWS; do
            b=$(pr_med "${res[pgb-$row-bare-tps]}")
            bd=$(pr_med "${res[pgb-$row-bare-conn]}")
            for mode in "${modes[@]}"; do
                m=$(pr_med "${res[pgb-$row-$mode-tps]}")
                md=$(pr_med "${res[pgb-$row-$mode-conn]}")
                printf '%-10s %-11s %9s %7s %12s %7s %9s %9s %5s\n' \
                    "$([[ $row == C* ]] && echo "-C -c ${row#C}" || echo "-c ${row#c}")" "$mode" \
                    "$m" "$(ratio "$m" "$b")" "$md" "$(ratio "$md" "$bd")" \
                    "$(pr_med "${res[pgb-$row-$mode-cpu]}")" "$(pr_med "${res[pgb-$row-$mode-drain]}")" \
                    "$(pr_med "${res[pgb-$row-$mode-T]}")"
            done
        done
        printf '(conn ms: pgbench'"'"'s "initial connection time" (all clients connected), with -C its\n'
        printf ' "average connection time"; sup CPU: supervise utime+stime from pgbench start to drained;\n'
        printf ' drain: after pgbench exited, until the server had no backend left; -T: pgbench'"'"'s\n'
        printf ' duration, which includes its connection time: %s s + the expected connection time)\n' "$PR_PGB_SECONDS"
    fi
    if [[ " $PR_ROWS " == *" parked "* ]]; then
        printf '\n%s threads parked in recv on tracked connections (parked_threads); %s round(s), median\n' \
            "$PR_PARK_CONNS" "$PR_ROUNDS"
        printf '%-11s %9s %14s %16s %9s %7s %9s\n' mode "setup s" "idle sup %core" "1 wake p50/p99" \
            "wake s" "÷ bare" "close s"
        b=$(pr_med "${res[park-bare-wake_s]}")
        for mode in bare supervised; do
            m=$(pr_med "${res[park-$mode-wake_s]}")
            printf '%-11s %9s %14s %16s %9s %7s %9s\n' "$mode" "$(pr_med "${res[park-$mode-setup_s]}")" \
                "$(pr_med "${res[park-$mode-idle_cpu_pct]}")" \
                "$(pr_med "${res[park-$mode-serial_p50_ms]}")/$(pr_med "${res[park-$mode-serial_p99_ms]}") ms" \
                "$m" "$(ratio "$m" "$b")" "$(pr_med "${res[park-$mode-close_s]}")"
        done
        printf '(setup: connect all, until every thread is in recvfrom; idle: supervise utime+stime over\n'
        printf ' %s s of waiting, %% of one core; 1 wake: 1 byte sent on one connection, until its echo,\n' "$PR_PARK_IDLE"
        printf ' %s connections one after another while the others stay parked; wake: 1 byte sent on\n' "$PR_PARK_SERIAL"
        printf ' every connection, until all echoed; close: all closed, until the tenant exited)\n'
    fi
    printf '(pressure part: %s s; load average before %s, after %s: other work on the host skews these)\n' \
        "$((SECONDS - t_part))" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
