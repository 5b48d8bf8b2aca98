# Part (g) of scripts/bench.sh (sourced by it; uses its and bench_diag.sh's helpers):
# what mirroring costs the tenant. Prints, never asserts.
#
# (g) mirror: pgbench -S (-c PG_CLIENTS -j PG_JOBS -T PG_SECONDS after a 3 s warm-up,
#     scale PG_SCALE) against one PostgreSQL cluster, MR_ROUNDS rounds, modes
#     interleaved (the order rotates each round), median TPS:
#       identity  the tracked port with the raw framer, no rules (profiles/postgres.toml)
#       framed    the postgres framer, no rules, no mirror (what framing alone costs)
#       mirror    the postgres framer, no rules, and a [mirror]: every Query whole, the
#                 5-byte header of every DataRow, to a pcapng file under the state dir
#       stalled   as mirror, plus a second sink: a TCP collector that accepts and never
#                 reads (its queue fills and drops; the tenant must not notice)
#       bare      postgres run directly, for reference
#     Prints mirror ÷ identity (target ≥ 0.9), mirror ÷ framed and stalled ÷ mirror,
#     and for the mirror runs the messages mirrored per second of the measured run, the
#     records dropped, and the pcapng bytes written.
# Knobs: MR_ROUNDS [3]   MR_MODES ["identity framed mirror stalled bare"]
# shellcheck shell=bash disable=SC2034  # FAILED is read by bench.sh

MR_ROUNDS=${MR_ROUNDS:-3}
MR_MODES=${MR_MODES:-identity framed mirror stalled bare}
MR_STALL_PORT=

MR_DIR=
MR_TPS=
MR_RATE=
MR_DROPS=
MR_BYTES=

# mr_profile MODE: the profile file of MODE (written once into MR_DIR).
mr_profile() {
    local file=$MR_DIR/$1.toml
    [ -f "$file" ] && { echo "$file"; return; }
    case $1 in
    identity) cp "$ROOT/profiles/postgres.toml" "$file" ;;
    framed | mirror | stalled)
        cat >"$file" <<TOML
[tenant]
name = "pg-bench-$1"
user = "postgres"
[[stream]]
name = "pg"
listen_port = $PG_PORT
framer = "postgres"
on_error = "close"
TOML
        if [ "$1" != framed ]; then
            cat >>"$file" <<'TOML'
[[mirror.sink]]
name = "file"
kind = "pcapng"
path = "mirror/bench"
rotate_bytes = 1073741824
[[mirror.policy]]
messages = ["Query"]
capture = "all"
[[mirror.policy]]
messages = ["DataRow"]
capture = "header"
TOML
        fi
        if [ "$1" = stalled ]; then
            printf '[[mirror.sink]]\nname = "stalled"\nkind = "tcp"\naddresses = ["127.0.0.1:%s"]\nqueue = 1024\n' \
                "$MR_STALL_PORT" >>"$file"
        fi
        ;;
    *) die "unknown mirror mode $1" ;;
    esac
    echo "$file"
}

# mr_mirrored STATE TENANT: messages mirrored so far, then records dropped, or "- -".
mr_counts() {
    local s
    s=$("$SUPERVISE" --state-dir "$1" ctl state "$2/@mirror" --json 2>/dev/null) || { echo "- -"; return; }
    jq -r '"\(.messages_mirrored) \([.sinks[].dropped] | add)"' <<<"$s"
}

# mr_measure MODE ROUND: sets MR_TPS (or FAIL); for mirror MR_RATE, MR_DROPS, MR_BYTES.
mr_measure() {
    local mode=$1 round=$2 out=$MR_DIR/pgbench-$1-$2.out log=$MR_DIR/$1-$2.log
    local state=$WORK/mirror-state-$1-$2 tenant="pg-bench-$1" pid before after drops
    local pg=("$PG_BIN/postgres" -D "$MR_DIR/data" -k "$MR_DIR" -c listen_addresses=127.0.0.1
        -p "$PG_PORT")
    MR_TPS=FAIL MR_RATE=- MR_DROPS=- MR_BYTES=-
    mkdir -p "$state"
    ensure_port_free "$PG_PORT"
    cd "$MR_DIR" || die "cd $MR_DIR"
    if [ "$mode" = bare ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- "${pg[@]}" </dev/null >>"$log" 2>&1 &
    else
        "$SUPERVISE" --state-dir "$state" run --profile "$(mr_profile "$mode")" -- "${pg[@]}" \
            </dev/null >/dev/null 2>"$log" &
    fi
    CHILD_PID=$!
    cd "$ROOT" || die "cd $ROOT"
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$log"
    pgb -S -c "$PG_CLIENTS" -j "$PG_JOBS" -T 3 >/dev/null 2>&1 || true
    [ "$mode" = mirror ] || [ "$mode" = stalled ] && read -r before _ <<<"$(mr_counts "$state" "$tenant")"
    pgb -S -c "$PG_CLIENTS" -j "$PG_JOBS" -T "$PG_SECONDS" >"$out" 2>&1 || true
    if [ "$mode" = mirror ] || [ "$mode" = stalled ]; then
        read -r after drops <<<"$(mr_counts "$state" "$tenant")"
        MR_RATE=$(awk -v a="$before" -v b="$after" -v s="$PG_SECONDS" \
            'BEGIN { if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) printf "%.0f", (b - a) / s; else print "n/a" }')
        MR_DROPS=$drops
    fi
    if grep -q '^tps = ' "$out"; then
        MR_TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | awk '{ printf "%.0f", $1 }')
    else
        echo "pgbench ($mode, round $round) failed:" >&2
        tail -n 20 "$out" "$log" >&2
    fi
    stop_pid "$CHILD_PID" 30
    CHILD_PID=
    [ "$STOP_RC" = 0 ] || echo "warning: server ($mode) exited with status $STOP_RC" >&2
    [ "$mode" = mirror ] || [ "$mode" = stalled ] && MR_BYTES=$(cat "$state"/mirror/bench-*.pcapng 2>/dev/null | wc -c)
    rm -rf "$state/mirror"
}

bench_mirror() {
    hdr "(g) mirroring: pgbench -S, identity vs postgres framer vs framer + mirror (Query whole, DataRow header, to pcapng) vs bare"
    ensure_postgres
    ensure_port_free "$PG_PORT"
    command -v jq >/dev/null || die "jq is needed (apt-get install jq)"
    MR_DIR=$WORK/mirror
    mkdir -p "$MR_DIR"
    init_cluster "$MR_DIR"
    ensure_port_free "$PG_PORT"
    (cd "$MR_DIR" && exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
        "$PG_BIN/postgres" -D "$MR_DIR/data" -k "$MR_DIR" -c listen_addresses=127.0.0.1 \
        -p "$PG_PORT") </dev/null >>"$MR_DIR/bare.log" 2>&1 &
    CHILD_PID=$!
    wait_pg_ready "$CHILD_PID" "$PG_PORT" "$MR_DIR/bare.log"
    pgb -i -s "$PG_SCALE" -q >"$MR_DIR/init.log" 2>&1 || { cat "$MR_DIR/init.log" >&2; die "pgbench -i failed"; }
    pg_stop
    # The collector that never reads (mode stalled): accepts, then holds its sockets.
    python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True); sys.stdout.close()
held = []
while True:
    held.append(s.accept())' >"$MR_DIR/stall.port" &
    BG_PIDS+=("$!")
    for _ in $(seq 50); do [ -s "$MR_DIR/stall.port" ] && break; sleep 0.1; done
    MR_STALL_PORT=$(cat "$MR_DIR/stall.port")

    local modes round i v
    read -r -a modes <<<"$MR_MODES"
    local -A res=() rate=() drops=() bytes=()
    for round in $(seq "$MR_ROUNDS"); do
        for i in "${!modes[@]}"; do
            v=${modes[$(((i + round - 1) % ${#modes[@]}))]}
            mr_measure "$v" "$round"
            [ "$MR_TPS" = FAIL ] && FAILED=1
            if [ "$v" = mirror ] || [ "$v" = stalled ]; then
                printf '  round %s %-9s %s tps (%s messages mirrored/s, %s dropped, %s pcapng bytes)\n' \
                    "$round" "$v:" "$MR_TPS" "$MR_RATE" "$MR_DROPS" "$MR_BYTES" >&2
                rate[$v]+="$MR_RATE " drops[$v]+="$MR_DROPS " bytes[$v]+="$MR_BYTES "
            else
                printf '  round %s %-9s %s tps\n' "$round" "$v:" "$MR_TPS" >&2
            fi
            res[$v]+="$MR_TPS "
        done
    done
    local -A med=([identity]=n/a [framed]=n/a [mirror]=n/a [stalled]=n/a [bare]=n/a)
    for v in "${modes[@]}"; do
        med[$v]=$(tr ' ' '\n' <<<"${res[$v]}" | median)
    done
    printf '\npgbench -S -c %s -j %s -T %s, scale %s; %s rounds, modes interleaved (order rotated)\n' \
        "$PG_CLIENTS" "$PG_JOBS" "$PG_SECONDS" "$PG_SCALE" "$MR_ROUNDS"
    printf '%-9s %-26s %11s %10s %8s\n' mode "TPS per round" "median TPS" "÷ identity" "÷ bare"
    for v in "${modes[@]}"; do
        printf '%-9s %-26s %11s %10s %8s\n' "$v" "${res[$v]}" "${med[$v]}" \
            "$(ratio "${med[$v]}" "${med[identity]}")" "$(ratio "${med[$v]}" "${med[bare]}")"
    done
    printf 'mirror ÷ identity = %s   (target ≥ 0.9)   mirror ÷ framed = %s   framed ÷ identity = %s\n' \
        "$(ratio "${med[mirror]}" "${med[identity]}")" "$(ratio "${med[mirror]}" "${med[framed]}")" \
        "$(ratio "${med[framed]}" "${med[identity]}")"
    printf 'stalled ÷ mirror = %s   (a collector that never reads beside the pcapng file)\n' \
        "$(ratio "${med[stalled]}" "${med[mirror]}")"
    for v in mirror stalled; do
        [ -n "${rate[$v]:-}" ] || continue
        printf '%s runs: messages mirrored per second %s; records dropped %s; pcapng bytes per run %s\n' \
            "$v" "${rate[$v]% }" "${drops[$v]% }" "${bytes[$v]% }"
    done
}
