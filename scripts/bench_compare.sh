# Part (h) of scripts/bench.sh (sourced by it; uses its helpers and knobs): supervise
# beside a proxy written for the job, on the same cluster, in one run. Prints, never
# asserts.
#
# (h) compare: one PostgreSQL cluster (scale PG_SCALE), five ways, CM_ROUNDS rounds with
#     the modes interleaved (the order rotates each round):
#       bare       postgres run directly
#       floor      supervise run --continue-all (notify + CONTINUE: the kernel's floor)
#       identity   supervise run --profile profiles/postgres.toml (every client-socket
#                  call serviced, raw framer, no rules)
#       pg-demo    supervise run --profile profiles/pg-demo.toml (postgres framer + rules)
#       pgbouncer  postgres bare behind Debian's pgbouncer in session mode (a pass-through
#                  proxy on CM_BOUNCER_PORT; installed with apt-get when missing)
#     Each mode's server is started once per round and runs every row, CM_SECONDS each
#     after a 2 s warm-up: -S -c 1, -S -c 4, -N -c 4, -S -C -c 4 (a connection per
#     transaction; pgbouncer pools server connections there, so compare that row's
#     pgbouncer with bare only), -S -c 64. For the supervised modes it also counts, per
#     transaction, the notifications the supervisor serviced (its own counters,
#     `ctl metrics`) and its CPU time (utime + stime of the supervise process).
#     Identity variants for the threading experiments (issue 14) are modes too:
#     id-t2-pin-sync is identity with --notify-threads 2 --pin-notify-threads
#     --sync-wakeup (parts: tN, pin, sync). Mode `before` is identity run by the binary
#     CM_BEFORE_BIN (a saved build), for a before/after in one run.
# Knobs: CM_ROUNDS [2]   CM_SECONDS [8]   CM_MODES ["bare floor identity pg-demo pgbouncer"]
#        CM_ROWS ["S1 S4 N4 C4 S64"]   CM_BOUNCER_PORT [6432]
# shellcheck shell=bash disable=SC2034  # FAILED is read by bench.sh

CM_ROUNDS=${CM_ROUNDS:-2}
CM_SECONDS=${CM_SECONDS:-8}
CM_MODES=${CM_MODES:-bare floor identity pg-demo pgbouncer}
CM_ROWS=${CM_ROWS:-S1 S4 N4 C4 S64}
CM_BOUNCER_PORT=${CM_BOUNCER_PORT:-6432}
CM_DIR=
CM_BOUNCER_PID=

# cm_row_args ROW: pgbench's options for ROW.
cm_row_args() {
    case $1 in
    S1) echo "-S -c 1 -j 1" ;;
    S4) echo "-S -c 4 -j 2" ;;
    N4) echo "-N -c 4 -j 2" ;;
    C4) echo "-S -C -c 4 -j 2" ;;
    S64) echo "-S -c 64 -j 2" ;;
    *) die "unknown compare row $1" ;;
    esac
}

# cm_notifications STATE: notifications serviced so far (every family), or "-".
cm_notifications() {
    "$SUPERVISE" --state-dir "$1" ctl metrics 2>/dev/null |
        awk '/^supervise_notifications_total/ { n += $NF } END { if (NR) printf "%d", n; else print "-" }'
}

# cm_cpu_ticks PID: utime + stime of PID (all its threads), in clock ticks.
cm_cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo -
}

# cm_variant_flags MODE: the run flags of an identity variant named id-PART-PART…,
# where a part is tN (--notify-threads N), pin (--pin-notify-threads) or sync
# (--sync-wakeup); e.g. id-t2-pin-sync.
cm_variant_flags() {
    local part flags=()
    IFS=- read -r -a parts <<<"${1#id-}"
    for part in "${parts[@]}"; do
        case $part in
        t[0-9]*) flags+=(--notify-threads "${part#t}") ;;
        pin) flags+=(--pin-notify-threads) ;;
        sync) flags+=(--sync-wakeup) ;;
        *) die "unknown part $part of compare mode $1" ;;
        esac
    done
    echo "${flags[*]}"
}

cm_start() { # cm_start MODE STATE LOG
    local mode=$1 state=$2 log=$3
    local pg=("$PG_BIN/postgres" -D "$CM_DIR/data" -k "$CM_DIR" -c listen_addresses=127.0.0.1
        -p "$PG_PORT" -c max_connections=120)
    ensure_port_free "$PG_PORT"
    cd "$CM_DIR" || die "cd $CM_DIR"
    case $mode in
    bare | pgbouncer)
        setpriv --reuid=postgres --regid=postgres --init-groups -- "${pg[@]}" </dev/null >>"$log" 2>&1 &
        ;;
    floor) "$SUPERVISE" --state-dir "$state" run --profile "$ROOT/profiles/postgres.toml" --continue-all \
        -- "${pg[@]}" </dev/null >>"$log" 2>&1 & ;;
    identity) "$SUPERVISE" --state-dir "$state" run --profile "$ROOT/profiles/postgres.toml" \
        -- "${pg[@]}" </dev/null >>"$log" 2>&1 & ;;
    pg-demo) "$SUPERVISE" --state-dir "$state" run --profile "$ROOT/profiles/pg-demo.toml" \
        -- "${pg[@]}" </dev/null >>"$log" 2>&1 & ;;
    before)
        [ -x "${CM_BEFORE_BIN:-}" ] || die "mode before needs CM_BEFORE_BIN (a saved supervise binary)"
        "$CM_BEFORE_BIN" --state-dir "$state" run --profile "$ROOT/profiles/postgres.toml" \
            -- "${pg[@]}" </dev/null >>"$log" 2>&1 &
        ;;
    id-*)
        local flags=()
        read -r -a flags <<<"$(cm_variant_flags "$mode")"
        "$SUPERVISE" --state-dir "$state" run --profile "$ROOT/profiles/postgres.toml" "${flags[@]}" \
            -- "${pg[@]}" </dev/null >>"$log" 2>&1 &
        ;;
    *) die "unknown compare mode $mode" ;;
    esac
    CHILD_PID=$!
    cd "$ROOT" || die "cd $ROOT"
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$log"
    if [ "$mode" = pgbouncer ]; then
        ensure_port_free "$CM_BOUNCER_PORT"
        setpriv --reuid=postgres --regid=postgres --init-groups -- pgbouncer "$CM_DIR/pgbouncer.ini" \
            </dev/null >>"$log" 2>&1 &
        CM_BOUNCER_PID=$!
        BG_PIDS+=("$CM_BOUNCER_PID")
        local _
        for _ in $(seq 100); do port_in_use "$CM_BOUNCER_PORT" && break; sleep 0.1; done
        port_in_use "$CM_BOUNCER_PORT" || die "pgbouncer did not listen on $CM_BOUNCER_PORT (see $log)"
    fi
}

cm_stop() {
    if [ -n "$CM_BOUNCER_PID" ]; then
        stop_pid "$CM_BOUNCER_PID" 10
        CM_BOUNCER_PID=
        BG_PIDS=()
    fi
    pg_stop
}

# cm_round MODE ROUND: every row against one start of MODE; appends "ROW TPS NPT CPT"
# lines (notifications and CPU µs per transaction, "-" for unsupervised modes) to
# CM_DIR/results.
cm_round() {
    local mode=$1 round=$2 state=$WORK/compare-state-$1-$2 log=$CM_DIR/$1-$2.log
    local port=$PG_PORT row args out tps txs n0 n1 c0 c1 npt cpt hz
    hz=$(getconf CLK_TCK)
    [ "$mode" = pgbouncer ] && port=$CM_BOUNCER_PORT
    mkdir -p "$state"
    cm_start "$mode" "$state" "$log"
    for row in $CM_ROWS; do
        read -r -a args <<<"$(cm_row_args "$row")"
        out=$CM_DIR/pgbench-$mode-$round-$row.out
        "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n "${args[@]}" -T 2 postgres >/dev/null 2>&1 || true
        n0=- c0=-
        if [ "$mode" != bare ] && [ "$mode" != pgbouncer ]; then
            n0=$(cm_notifications "$state")
            c0=$(cm_cpu_ticks "$CHILD_PID")
        fi
        "$PG_BIN/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n "${args[@]}" -T "$CM_SECONDS" postgres \
            >"$out" 2>&1 || true
        n1=- c1=-
        if [ "$n0" != - ]; then
            n1=$(cm_notifications "$state")
            c1=$(cm_cpu_ticks "$CHILD_PID")
        fi
        tps=FAIL txs=
        if grep -q '^tps = ' "$out"; then
            tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n 1 | awk '{ printf "%.0f", $1 }')
            txs=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
            grep -q '^number of failed transactions: 0 ' "$out" ||
                echo "warning ($mode $row): $(grep '^number of failed' "$out")" >&2
        else
            echo "pgbench ($mode $row, round $round) failed:" >&2
            tail -n 5 "$out" >&2
            FAILED=1
        fi
        npt=$(awk -v a="$n0" -v b="$n1" -v t="$txs" 'BEGIN {
            if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/ && t > 0) printf "%.1f", (b - a) / t; else print "-" }')
        cpt=$(awk -v a="$c0" -v b="$c1" -v t="$txs" -v hz="$hz" 'BEGIN {
            if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/ && t > 0) printf "%.1f", (b - a) * 1e6 / hz / t; else print "-" }')
        printf '  round %s %-9s %-4s %7s tps  %5s notifications/tx  %6s µs supervisor CPU/tx\n' \
            "$round" "$mode" "$row" "$tps" "$npt" "$cpt" >&2
        echo "$mode $row $tps $npt $cpt" >>"$CM_DIR/results"
    done
    cm_stop
}

bench_compare() {
    hdr "(h) compare: bare / floor / identity / pg-demo / pgbouncer (session mode), pgbench rows, same cluster"
    ensure_postgres
    command -v pgbouncer >/dev/null || {
        echo "installing pgbouncer (apt-get) ..." >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends pgbouncer >/dev/null
        # Debian starts its own instance on 6432; ours uses its own config.
        systemctl stop pgbouncer 2>/dev/null || service pgbouncer stop 2>/dev/null || true
    }
    ensure_port_free "$PG_PORT"
    CM_DIR=$WORK/compare
    mkdir -p "$CM_DIR"
    chown postgres "$CM_DIR"
    init_cluster "$CM_DIR"
    cat >"$CM_DIR/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PG_PORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $CM_BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $CM_DIR/userlist.txt
pool_mode = session
max_client_conn = 300
default_pool_size = 100
logfile = $CM_DIR/pgbouncer.log
pidfile = $CM_DIR/pgbouncer.pid
INI
    echo '"postgres" ""' >"$CM_DIR/userlist.txt"
    chown postgres "$CM_DIR/pgbouncer.ini" "$CM_DIR/userlist.txt"
    cm_start bare "$WORK/compare-state-init" "$CM_DIR/init.log"
    pgb -i -s "$PG_SCALE" -q >>"$CM_DIR/init.log" 2>&1 || { cat "$CM_DIR/init.log" >&2; die "pgbench -i failed"; }
    pg_stop
    : >"$CM_DIR/results"
    local modes round i
    read -r -a modes <<<"$CM_MODES"
    for round in $(seq "$CM_ROUNDS"); do
        for i in "${!modes[@]}"; do
            cm_round "${modes[$(((i + round - 1) % ${#modes[@]}))]}" "$round"
        done
    done
    cm_table
}

# cm_med MODE ROW FIELD: the median of FIELD (3 TPS, 4 notifications/tx, 5 CPU µs/tx).
cm_med() {
    awk -v m="$1" -v r="$2" -v f="$3" '$1 == m && $2 == r { print $f }' "$CM_DIR/results" | median
}

cm_table() {
    local row m
    printf '\npgbench (scale %s), %s s per row after 2 s of warm-up, %s rounds, modes interleaved; median TPS\n' \
        "$PG_SCALE" "$CM_SECONDS" "$CM_ROUNDS"
    printf '%-14s' row
    for m in $CM_MODES; do printf '%11s' "$m"; done
    printf '%9s %9s %9s %9s %9s\n' "id÷bare" "id÷floor" "demo÷id" "id÷bncr" "bncr÷bare"
    for row in $CM_ROWS; do
        local -A t=()
        printf '%-14s' "$(cm_row_args "$row" | sed 's/ -j [0-9]*//')"
        for m in $CM_MODES; do
            t[$m]=$(cm_med "$m" "$row" 3)
            printf '%11s' "${t[$m]}"
        done
        printf '%9s %9s %9s %9s %9s\n' "$(ratio "${t[identity]:-}" "${t[bare]:-}")" \
            "$(ratio "${t[identity]:-}" "${t[floor]:-}")" "$(ratio "${t[pg-demo]:-}" "${t[identity]:-}")" \
            "$(ratio "${t[identity]:-}" "${t[pgbouncer]:-}")" "$(ratio "${t[pgbouncer]:-}" "${t[bare]:-}")"
        unset t
    done
    local variants=() supervised=()
    for m in $CM_MODES; do
        case $m in
        id-* | before) variants+=("$m") supervised+=("$m") ;;
        floor | identity | pg-demo) supervised+=("$m") ;;
        esac
    done
    if [ ${#variants[@]} -gt 0 ]; then
        printf '\nidentity variants: ÷ bare / ÷ identity / ÷ floor\n%-14s' row
        for m in "${variants[@]}"; do printf '%24s' "$m"; done
        printf '\n'
        for row in $CM_ROWS; do
            printf '%-14s' "$(cm_row_args "$row" | sed 's/ -j [0-9]*//')"
            local v b i f
            b=$(cm_med bare "$row" 3) i=$(cm_med identity "$row" 3) f=$(cm_med floor "$row" 3)
            for m in "${variants[@]}"; do
                v=$(cm_med "$m" "$row" 3)
                printf '%24s' "$(ratio "$v" "$b") / $(ratio "$v" "$i") / $(ratio "$v" "$f")"
            done
            printf '\n'
        done
    fi
    printf '\nper transaction, supervised modes (median): notifications serviced / supervisor CPU µs\n'
    printf '%-14s' row
    for m in "${supervised[@]}"; do printf '%22s' "$m"; done
    printf '\n'
    for row in $CM_ROWS; do
        printf '%-14s' "$(cm_row_args "$row" | sed 's/ -j [0-9]*//')"
        for m in "${supervised[@]}"; do
            printf '%22s' "$(cm_med "$m" "$row" 4) / $(cm_med "$m" "$row" 5)"
        done
        printf '\n'
    done
    printf '(the C4 row: pgbouncer keeps its server connections, so only bncr÷bare compares like\n'
    printf ' with like there; floor services nothing, so its notifications are 0 by its counters)\n'
}
