# Parts (e) and (f) of scripts/bench.sh (sourced by it; uses its helpers and knobs):
# what diagnostics and the control socket cost the tenant. Prints, never asserts.
#
# (e) diag: pgbench -S (-c PG_CLIENTS -j PG_JOBS -T PG_SECONDS after a 3 s warm-up,
#     scale PG_SCALE, as part (b)) against one PostgreSQL cluster under
#     profiles/pg-demo.toml, three ways, DG_ROUNDS rounds interleaved (the order rotates
#     each round), median TPS:
#       off   diagnostics off: SUPERVISE_LOG=warn, the human log to /dev/null
#               supervise --state-dir D --log-format human run --profile ... 2>/dev/null
#       on    diagnostics on: SUPERVISE_LOG=info, the JSON log to a file
#               supervise --state-dir D --log-format json run --profile ... 2>FILE
#             and, once the measured pgbench has connected, one of its connections at
#             debug, by a signed request (an ed25519 key made for the bench, trusted
#             for `level` in D/allowed_signers): supervise --state-dir D request --key K
#             --recipient K.pub level TENANT/pg-clients/cN debug for=DG_LEVEL_FOR (the
#             newest connection `ctl list --json` shows)
#       bare  postgres run directly as the postgres user, for reference
#     Prints on ÷ off (target ≥ 0.97), on ÷ bare, the JSON log's size and its DEBUG
#     records.
# (f) ctl: one supervised PostgreSQL (CT_PROFILE, max_connections CT_CONNS + 100,
#     shared_buffers 16MB, autovacuum off) holding CT_CONNS idle tracked connections
#     (one pgbench -c CT_CONNS whose script only sleeps), and one client in a closed
#     loop (pgbench -S -c 1 -j 1 -l: every transaction's latency, one round trip of
#     Query → rows + ReadyForQuery). Its latency is compared between windows where the
#     control socket is idle (CT_IDLE s each) and windows where a loop runs CT_DUMPS
#     `supervise ctl state DPID` dumps back to back (a different connection each time,
#     spread over all of them) with a `supervise ctl list` (every connection) after
#     every CT_LIST_EVERY-th; CT_ROUNDS idle/busy pairs in one pgbench run, samples
#     pooled by window. Prints p50/p99 of both and busy ÷ idle, how long each loop
#     took, and the supervisor's CPU in each kind of window. The ctl processes run on
#     the same 2 CPUs as the tenant: that is part of what a busy control socket costs.
#
# Knobs (defaults in brackets):
#   DG_ROUNDS [3]   DG_LEVEL_FOR [60s]   DG_MODES ["off on bare"]; also json (as on, but no
#     connection at debug: the JSON log at info alone)
#   CT_CONNS [1000]   CT_DUMPS [100]   CT_LIST_EVERY [10]   CT_ROUNDS [3]   CT_IDLE [4]
#   CT_PROFILE [profiles/pg-demo.toml]   CT_TIMEOUT [180] seconds allowed for the
#   connections to open
# shellcheck shell=bash disable=SC2034  # FAILED is read by bench.sh

DG_ROUNDS=${DG_ROUNDS:-3}
DG_LEVEL_FOR=${DG_LEVEL_FOR:-60s}
DG_MODES=${DG_MODES:-off on bare}
CT_CONNS=${CT_CONNS:-1000}
CT_DUMPS=${CT_DUMPS:-100}
CT_LIST_EVERY=${CT_LIST_EVERY:-10}
CT_ROUNDS=${CT_ROUNDS:-3}
CT_IDLE=${CT_IDLE:-4}
CT_PROFILE=${CT_PROFILE:-$ROOT/profiles/pg-demo.toml}
CT_TIMEOUT=${CT_TIMEOUT:-180}

# Background helpers (pgbench runs) other than CHILD_PID, stopped by bench.sh's cleanup.
BG_PIDS=()

# bg_stop PID: stops a background helper and forgets it.
bg_stop() {
    local p keep=()
    stop_pid "$1" 20
    for p in "${BG_PIDS[@]}"; do
        [ "$p" = "$1" ] || keep+=("$p")
    done
    BG_PIDS=("${keep[@]}")
}

# now: seconds since the epoch with microseconds (no fork).
now() { echo "${EPOCHREALTIME/,/.}"; }
# elapsed T0 [T1]: T1 (default now) - T0, seconds, two decimals.
elapsed() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.2f", b - a }'; }

# max_conn_no STATE_DIR: the highest N of the connections (TENANT/STREAM/cN) listed.
max_conn_no() {
    "$SUPERVISE" --state-dir "$1" ctl list --json 2>/dev/null |
        jq -r '[.[] | select(.kind == "connection") | .dpid | capture("/c(?<n>[0-9]+)$").n
            | tonumber] | max // 0' 2>/dev/null || echo 0
}

# ---------------------------------------------------------------- (e) diag
DG_DIR=
DG_STATE=
DG_KEY=
# dg_measure MODE ROUND: one round of MODE (off, on or bare). Sets DG_TPS (or FAIL),
# and for `on` DG_BYTES, DG_DEBUG (DEBUG records in the JSON log) and DG_DPID.
DG_TPS=
DG_BYTES=
DG_DEBUG=
DG_DPID=
dg_measure() {
    local mode=$1 round=$2 log=/dev/null json=$DG_DIR/$1-$2.json out=$DG_DIR/pgbench-$1-$2.out
    local pg=("$PG_BIN/postgres" -D "$DG_DIR/data" -k "$DG_DIR" -c listen_addresses=127.0.0.1
        -p "$PG_PORT")
    local profile=$ROOT/profiles/pg-demo.toml pid pre n _
    DG_TPS=FAIL DG_BYTES=- DG_DEBUG=- DG_DPID=-
    ensure_port_free "$PG_PORT"
    cd "$DG_DIR" || die "cd $DG_DIR"
    case $mode in
    bare)
        log=$DG_DIR/bare.log
        setpriv --reuid=postgres --regid=postgres --init-groups -- "${pg[@]}" \
            </dev/null >>"$log" 2>&1 &
        ;;
    off)
        SUPERVISE_LOG=warn "$SUPERVISE" --state-dir "$DG_STATE" --log-format human \
            run --profile "$profile" -- "${pg[@]}" </dev/null >/dev/null 2>/dev/null &
        ;;
    on | json)
        log=$json
        SUPERVISE_LOG=info "$SUPERVISE" --state-dir "$DG_STATE" --log-format json \
            run --profile "$profile" -- "${pg[@]}" </dev/null >/dev/null 2>"$json" &
        ;;
    *) die "unknown diag mode $mode" ;;
    esac
    CHILD_PID=$!
    cd "$ROOT" || die "cd $ROOT"
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$log"
    pgb -S -c "$PG_CLIENTS" -j "$PG_JOBS" -T 3 >/dev/null 2>&1 || true
    [ "$mode" = on ] && pre=$(max_conn_no "$DG_STATE")
    pgb -S -c "$PG_CLIENTS" -j "$PG_JOBS" -T "$PG_SECONDS" >"$out" 2>&1 &
    pid=$!
    BG_PIDS+=("$pid")
    if [ "$mode" = on ]; then
        # The newest connection of the measured run once all its clients are listed (the
        # warm-up's are numbered <= pre; pgbench's first, short-lived connection, which
        # only reads the scale, comes before its clients').
        for _ in $(seq 200); do
            DG_DPID=$("$SUPERVISE" --state-dir "$DG_STATE" ctl list --json 2>/dev/null |
                jq -r --argjson pre "$pre" --argjson k "$PG_CLIENTS" '[.[]
                    | select(.kind == "connection")
                    | {dpid, n: (.dpid | capture("/c(?<n>[0-9]+)$").n | tonumber)}
                    | select(.n > $pre)] | if length >= $k then max_by(.n).dpid else empty end' \
                2>/dev/null) || true
            if [ -n "$DG_DPID" ] && "$SUPERVISE" --state-dir "$DG_STATE" request --key "$DG_KEY" \
                --recipient "$DG_KEY.pub" -o "$DG_STATE/level.age" level "$DG_DPID" debug \
                "for=$DG_LEVEL_FOR" >/dev/null 2>&1; then
                break
            fi
            DG_DPID=-
            sleep 0.05
        done
        [ "$DG_DPID" != - ] ||
            echo "warning (on, round $round): could not set debug on a connection of the measured pgbench" >&2
    fi
    wait "$pid" || true
    BG_PIDS=()
    if grep -q '^tps = ' "$out"; then
        DG_TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | awk '{ printf "%.0f", $1 }')
        grep -q '^number of failed transactions: 0 ' "$out" ||
            echo "warning ($mode): $(grep '^number of failed' "$out")" >&2
    else
        echo "pgbench ($mode, round $round) failed:" >&2
        tail -n 20 "$out" >&2
        [ "$log" != /dev/null ] && tail -n 20 "$log" >&2
    fi
    stop_pid "$CHILD_PID" 30
    CHILD_PID=
    [ "$STOP_RC" = 0 ] || echo "warning: server ($mode) exited with status $STOP_RC" >&2
    if [ "$mode" = on ] || [ "$mode" = json ]; then
        DG_BYTES=$(stat -c %s "$json")
        DG_DEBUG=$(grep -c '"level":"DEBUG"' "$json" || true)
    fi
}

bench_diag() {
    hdr "(e) diagnostics: pgbench -S under profiles/pg-demo.toml, diagnostics off vs on (JSON log, info, one connection at debug) vs bare"
    ensure_postgres
    ensure_port_free "$PG_PORT"
    command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
    DG_DIR=$WORK/diag
    DG_STATE=$WORK/diag-state
    mkdir -p "$DG_DIR" "$DG_STATE"
    # Raising a level is a signed request: a key of the bench's own, trusted for it.
    DG_KEY=$DG_STATE/bench-key
    ssh-keygen -q -t ed25519 -N '' -C bench -f "$DG_KEY"
    echo "bench permit=\"level\",tenants=\"*\" $(cut -d' ' -f1,2 "$DG_KEY.pub")" >"$DG_STATE/allowed_signers"
    init_cluster "$DG_DIR"
    echo "pgbench -i -s $PG_SCALE (bare server) ..." >&2
    ensure_port_free "$PG_PORT"
    (cd "$DG_DIR" && exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
        "$PG_BIN/postgres" -D "$DG_DIR/data" -k "$DG_DIR" -c listen_addresses=127.0.0.1 \
        -p "$PG_PORT") </dev/null >>"$DG_DIR/bare.log" 2>&1 &
    CHILD_PID=$!
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$DG_DIR/bare.log"
    pgb -i -s "$PG_SCALE" -q >"$DG_DIR/init.log" 2>&1 || { cat "$DG_DIR/init.log" >&2; die "pgbench -i failed"; }
    pg_stop

    local modes round i v
    read -r -a modes <<<"$DG_MODES"
    local -A res=()
    local -A bytes=() debug=()
    local dpids=''
    for round in $(seq "$DG_ROUNDS"); do
        for i in "${!modes[@]}"; do
            v=${modes[$(((i + round - 1) % ${#modes[@]}))]}
            dg_measure "$v" "$round"
            [ "$DG_TPS" = FAIL ] && FAILED=1
            if [ "$v" = on ] || [ "$v" = json ]; then
                printf '  round %s %-5s %s tps (JSON log %s bytes, %s DEBUG records, debug on %s)\n' \
                    "$round" "$v:" "$DG_TPS" "$DG_BYTES" "$DG_DEBUG" "$DG_DPID" >&2
                bytes[$v]+="$DG_BYTES " debug[$v]+="$DG_DEBUG "
                [ "$v" = on ] && dpids+="$DG_DPID "
            else
                printf '  round %s %-5s %s tps\n' "$round" "$v:" "$DG_TPS" >&2
            fi
            res[$v]+="$DG_TPS "
        done
    done

    local -A med=()
    med[off]=n/a med[on]=n/a med[bare]=n/a
    for v in "${modes[@]}"; do
        med[$v]=$(tr ' ' '\n' <<<"${res[$v]}" | median)
    done
    printf '\npgbench -S -c %s -j %s -T %s, scale %s, profiles/pg-demo.toml; %s rounds, modes interleaved (order rotated)\n' \
        "$PG_CLIENTS" "$PG_JOBS" "$PG_SECONDS" "$PG_SCALE" "$DG_ROUNDS"
    printf '%-6s %-26s %11s %8s %8s\n' mode "TPS per round" "median TPS" "÷ off" "÷ bare"
    for v in "${modes[@]}"; do
        printf '%-6s %-26s %11s %8s %8s\n' "$v" "${res[$v]}" "${med[$v]}" \
            "$(ratio "${med[$v]}" "${med[off]}")" "$(ratio "${med[$v]}" "${med[bare]}")"
    done
    printf 'diagnostics on ÷ off = %s   (target ≥ 0.97)   on ÷ bare = %s   off ÷ bare = %s\n' \
        "$(ratio "${med[on]}" "${med[off]}")" "$(ratio "${med[on]}" "${med[bare]}")" \
        "$(ratio "${med[off]}" "${med[bare]}")"
    local mb per_tx
    for v in "${modes[@]}"; do
        [ "$v" = on ] || [ "$v" = json ] || continue
        mb=$(tr ' ' '\n' <<<"${bytes[$v]}" | median)
        per_tx=$(awk -v b="$mb" -v t="${med[$v]}" -v s="$PG_SECONDS" \
            'BEGIN { if (b ~ /^[0-9.]+$/ && t ~ /^[0-9.]+$/ && t > 0) printf "%.1f", b / (t * s); else printf "n/a" }')
        printf 'JSON log (%s) per round, server start to stop (3 s warm-up + %s s measured): %s bytes\n' \
            "$v" "$PG_SECONDS" "${bytes[$v]% }"
        printf ' (median %s MB, ~%s bytes per measured transaction); DEBUG records per round: %s\n' \
            "$(awk -v b="$mb" 'BEGIN { if (b ~ /^[0-9.]+$/) printf "%.2f", b / 1e6; else print "n/a" }')" \
            "$per_tx" "${debug[$v]% }"
    done
    [ -z "$dpids" ] || printf 'debug level set on (on): %s\n' "${dpids% }"
    printf '(off: SUPERVISE_LOG=warn, --log-format human, stderr to /dev/null; on: SUPERVISE_LOG=info,\n'
    printf ' --log-format json, stderr to a file, and a signed `level DPID debug for=%s` on one of the\n' "$DG_LEVEL_FOR"
    printf ' measured run'"'"'s %s connections once it connected; bare: no supervisor' "$PG_CLIENTS"
    [[ " $DG_MODES " == *" json "* ]] && printf '; json: as on, no connection at debug'
    printf ')\n'
}

# ---------------------------------------------------------------- (f) ctl
CT_DIR=
CT_STATE=
# ct_pct P FILE: the P-th percentile (nearest rank) of the numbers in FILE, or n/a.
ct_pct() {
    sort -n "$2" | awk -v p="$1" '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        i = int(p / 100 * NR); if (i < p / 100 * NR) i++; if (i < 1) i = 1
        printf "%.3f", v[i] / 1000 }'
}

bench_ctl() {
    hdr "(f) control socket: tenant latency with $CT_CONNS open connections, ctl idle vs $CT_DUMPS ctl state dumps (+ ctl list) back to back"
    local t_part=$SECONDS load0 nofile
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    ensure_postgres
    ensure_port_free "$PG_PORT"
    command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
    nofile=$(ulimit -Hn)
    [ "$nofile" = unlimited ] && nofile=1048576
    CT_DIR=$WORK/ctl
    CT_STATE=$WORK/ctl-state
    mkdir -p "$CT_DIR" "$CT_STATE"
    init_cluster "$CT_DIR"
    local log=$CT_DIR/server.log
    local pg=("$PG_BIN/postgres" -D "$CT_DIR/data" -k "$CT_DIR" -p "$PG_PORT"
        -c listen_addresses=127.0.0.1 -c "max_connections=$((CT_CONNS + 100))"
        -c shared_buffers=16MB -c autovacuum=off)
    (cd "$CT_DIR" && ulimit -n "$nofile" && exec "$SUPERVISE" --state-dir "$CT_STATE" \
        run --profile "$CT_PROFILE" -- "${pg[@]}") </dev/null >>"$log" 2>&1 &
    CHILD_PID=$!
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$log"
    "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 1 -q postgres \
        >"$CT_DIR/init.log" 2>&1 || { cat "$CT_DIR/init.log" >&2; die "pgbench -i failed"; }

    # CT_CONNS idle connections: pgbench's clients connect before the first command,
    # and the only command sleeps.
    local holder t0 n _ open_s
    printf '\\sleep 3600 s\n' >"$CT_DIR/hold.sql"
    (ulimit -n "$nofile" && exec "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n \
        -c "$CT_CONNS" -j 2 -T 3600 -f "$CT_DIR/hold.sql" postgres) >"$CT_DIR/hold.log" 2>&1 &
    holder=$!
    BG_PIDS+=("$holder")
    echo "opening $CT_CONNS connections ..." >&2
    t0=$(now)
    while :; do
        n=$("$PG_BIN/psql" -h "$CT_DIR" -p "$PG_PORT" -U postgres -Atq -c \
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" \
            postgres 2>/dev/null) || n=0
        [ "$n" -ge "$CT_CONNS" ] && break
        alive "$holder" || { tail -n 20 "$CT_DIR/hold.log" >&2; die "the holding pgbench exited"; }
        awk -v a="$t0" -v b="$(now)" -v t="$CT_TIMEOUT" 'BEGIN { exit !(b - a > t) }' &&
            die "only $n of $CT_CONNS connections open after $CT_TIMEOUT s"
        sleep 0.2
    done
    open_s=$(elapsed "$t0")
    echo "  $n connections open in $open_s s" >&2

    # The connection DPIDs, and CT_DUMPS of them spread over all.
    local list_json=$CT_DIR/list.json dpids=() tl nconn list_bytes
    t0=$(now)
    "$SUPERVISE" --state-dir "$CT_STATE" ctl list --json >"$list_json" || die "ctl list failed"
    tl=$(elapsed "$t0")
    list_bytes=$(stat -c %s "$list_json")
    mapfile -t dpids < <(jq -r '.[] | select(.kind == "connection") | .dpid' "$list_json")
    nconn=${#dpids[@]}
    [ "$nconn" -ge "$CT_CONNS" ] || echo "warning: ctl list shows $nconn connections, expected $CT_CONNS" >&2
    local targets=() i
    for i in $(seq 0 $((CT_DUMPS - 1))); do
        targets+=("${dpids[$((i * nconn / CT_DUMPS))]}")
    done
    echo "  ctl list: $nconn connections, $list_bytes bytes, $tl s; first dump target ${targets[0]}" >&2

    # One client in a closed loop, every transaction logged.
    local lat
    (cd "$CT_DIR" && exec "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -S -c 1 -j 1 \
        -T 3600 -l --log-prefix="$CT_DIR/txlog" postgres) >"$CT_DIR/lat.out" 2>&1 &
    lat=$!
    BG_PIDS+=("$lat")
    sleep 2 # connect, warm up
    alive "$lat" || { cat "$CT_DIR/lat.out" >&2; die "the latency pgbench exited"; }

    local round windows=() c0 c1 idle_cpu=0 busy_cpu=0 idle_s=0 busy_s=0 tb0 tb1 ts te
    local loops='' calls=() fails=0 k
    for round in $(seq "$CT_ROUNDS"); do
        # idle window
        c0=$(pr_cpu "$CHILD_PID")
        ts=$(now)
        sleep "$CT_IDLE"
        te=$(now)
        c1=$(pr_cpu "$CHILD_PID")
        windows+=("idle $ts $te")
        idle_cpu=$((idle_cpu + c1 - c0))
        idle_s=$(awk -v s="$idle_s" -v a="$ts" -v b="$te" 'BEGIN { printf "%.6f", s + b - a }')
        # busy window: CT_DUMPS state dumps back to back, a list after every CT_LIST_EVERY-th
        c0=$c1
        tb0=$(now)
        k=0
        for i in $(seq 0 $((CT_DUMPS - 1))); do
            ts=$EPOCHREALTIME
            "$SUPERVISE" --state-dir "$CT_STATE" ctl state "${targets[$i]}" >/dev/null || fails=$((fails + 1))
            calls+=("state $ts $EPOCHREALTIME")
            k=$((k + 1))
            if [ "$CT_LIST_EVERY" -gt 0 ] && [ $((k % CT_LIST_EVERY)) = 0 ]; then
                ts=$EPOCHREALTIME
                "$SUPERVISE" --state-dir "$CT_STATE" ctl list --json >/dev/null || fails=$((fails + 1))
                calls+=("list $ts $EPOCHREALTIME")
            fi
        done
        tb1=$(now)
        c1=$(pr_cpu "$CHILD_PID")
        windows+=("busy $tb0 $tb1")
        busy_cpu=$((busy_cpu + c1 - c0))
        busy_s=$(awk -v s="$busy_s" -v a="$tb0" -v b="$tb1" 'BEGIN { printf "%.6f", s + b - a }')
        loops+="$(elapsed "$tb0" "$tb1") "
        echo "  round $round: idle $CT_IDLE s, then $CT_DUMPS dumps in $(elapsed "$tb0" "$tb1") s" >&2
    done
    # The same process doing nothing through the socket, for scale.
    local ver=()
    for i in $(seq 10); do
        ts=$EPOCHREALTIME
        "$SUPERVISE" --version >/dev/null
        ver+=("version $ts $EPOCHREALTIME")
    done
    sleep 1
    alive "$lat" || { echo "the latency pgbench exited early:" >&2; tail -n 20 "$CT_DIR/lat.out" >&2; FAILED=1; }
    bg_stop "$lat" # SIGTERM: its log up to a moment ago is written (what is lost is after the windows)
    bg_stop "$holder"
    stop_pid "$CHILD_PID" 60
    CHILD_PID=
    [ "$STOP_RC" = 0 ] || echo "warning: server exited with status $STOP_RC" >&2

    # Split the transactions by the window they completed in (log: client_id
    # transaction_no latency_us script_no epoch_s epoch_us).
    local w
    : >"$CT_DIR/idle.us"
    : >"$CT_DIR/busy.us"
    cat "$CT_DIR"/txlog.* 2>/dev/null | grep -E '^[0-9]+ [0-9]+ [0-9]+ ' >"$CT_DIR/lat.all" || true
    for w in "${windows[@]}"; do
        read -r k ts te <<<"$w"
        awk -v a="$ts" -v b="$te" '{ t = $5 + $6 / 1e6; if (t >= a && t < b) print $3 }' \
            "$CT_DIR/lat.all" >>"$CT_DIR/$k.us"
    done
    local ni nb p50i p99i p50b p99b maxi maxb
    ni=$(wc -l <"$CT_DIR/idle.us")
    nb=$(wc -l <"$CT_DIR/busy.us")
    [ "$ni" -gt 0 ] && [ "$nb" -gt 0 ] || { echo "no latency samples (idle $ni, busy $nb)" >&2; FAILED=1; }
    p50i=$(ct_pct 50 "$CT_DIR/idle.us") p99i=$(ct_pct 99 "$CT_DIR/idle.us") maxi=$(ct_pct 100 "$CT_DIR/idle.us")
    p50b=$(ct_pct 50 "$CT_DIR/busy.us") p99b=$(ct_pct 99 "$CT_DIR/busy.us") maxb=$(ct_pct 100 "$CT_DIR/busy.us")
    local hz
    hz=$(getconf CLK_TCK)
    printf '\n%s idle tracked connections (%s, max_connections %s; opened in %s s); one pgbench -S -c 1\n' \
        "$nconn" "$(basename "$CT_PROFILE")" "$((CT_CONNS + 100))" "$open_s"
    printf 'client, latency of each transaction; %s rounds of %s s idle then %s ctl state dumps (+ a ctl list\n' \
        "$CT_ROUNDS" "$CT_IDLE" "$CT_DUMPS"
    printf 'after every %s-th), samples pooled by window\n' "$CT_LIST_EVERY"
    printf '%-26s %8s %9s %9s %9s %12s\n' "control socket" samples "p50 ms" "p99 ms" "max ms" "sup CPU %"
    printf '%-26s %8s %9s %9s %9s %12s\n' idle "$ni" "$p50i" "$p99i" "$maxi" \
        "$(awk -v c="$idle_cpu" -v s="$idle_s" -v hz="$hz" 'BEGIN { if (s > 0) printf "%.0f", 100 * c / hz / s; else print "-" }')"
    printf '%-26s %8s %9s %9s %9s %12s\n' "busy (dumps back to back)" "$nb" "$p50b" "$p99b" "$maxb" \
        "$(awk -v c="$busy_cpu" -v s="$busy_s" -v hz="$hz" 'BEGIN { if (s > 0) printf "%.0f", 100 * c / hz / s; else print "-" }')"
    printf 'busy ÷ idle: p50 %s, p99 %s\n' "$(ratio "$p50b" "$p50i")" "$(ratio "$p99b" "$p99i")"
    call_ms() { printf '%s\n' "${calls[@]}" "${ver[@]}" | tr , . | awk -v k="$1" '$1 == k { printf "%.2f\n", ($3 - $2) * 1000 }' | median; }
    printf '%s dumps (+ %s lists) took, per round: %ss; per call, median: ctl state %s ms, ctl list %s ms (%s bytes as JSON)\n' \
        "$CT_DUMPS" "$((CT_LIST_EVERY > 0 ? CT_DUMPS / CT_LIST_EVERY : 0))" "${loops% }" \
        "$(call_ms state)" "$(call_ms list)" "$list_bytes"
    [ "$fails" = 0 ] || { echo "warning: $fails ctl calls failed" >&2; FAILED=1; }
    printf '(for scale: `supervise --version`, the same binary started and exited without the socket: %s ms)\n' \
        "$(call_ms version)"
    printf '(latency: pgbench -l, Query to ReadyForQuery as the client sees it; a transaction counts in\n'
    printf ' the window it completed in; sup CPU: supervise utime+stime over the windows, %% of one core;\n'
    printf ' per call: the whole `supervise ctl` process, start to exit)\n'
    printf '(ctl part: %s s; load average before %s, after %s)\n' \
        "$((SECONDS - t_part))" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
