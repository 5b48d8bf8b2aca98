# Part (c) of scripts/bench.sh (sourced by it; uses its helpers and knobs): what
# confinement costs. One PostgreSQL cluster, owned by the tenant uid of
# profiles/tenants/pg-a.toml, listening on that tenant's address, run three ways,
# interleaved:
#   bare        postgres run directly as the tenant's uid
#   unconfined  supervise run with a profile naming that uid, not confined (the filter
#               only: untracked sockets, every notified call continued)
#   confined    supervise run --profile profiles/tenants/pg-a.toml (labels, Landlock,
#               its own IPC namespace; accept/listen/bind serviced, reads and writes
#               not: no stream is tracked)
# for pgbench -S over kept connections and pgbench -S -C (a new connection per
# transaction: every accept goes through the supervisor's label check).
# shellcheck shell=bash disable=SC2034  # FAILED is read by bench.sh

TN_STATE=
TN_ADDR=
TN_DATA=

# tn_start MODE: starts the cluster in MODE; sets CHILD_PID.
tn_start() {
    local mode=$1 log=$TN_STATE/$1.log uid gid
    uid=$(stat -c %u "$TN_DATA")
    gid=$(stat -c %g "$TN_DATA")
    local pg=("$PG_BIN/postgres" -D "$TN_DATA" -k "$TN_STATE/home/pg-a" -p 5432
        -c "listen_addresses=$TN_ADDR" -c dynamic_shared_memory_type=sysv)
    case $mode in
    bare)
        setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "${pg[@]}" </dev/null >>"$log" 2>&1 &
        ;;
    unconfined)
        printf '[tenant]\nname = "pg-a-open"\nuid = %s\ngid = %s\n' "$uid" "$gid" >"$TN_STATE/open.toml"
        "$SUPERVISE" --state-dir "$TN_STATE" run --profile "$TN_STATE/open.toml" -- "${pg[@]}" \
            </dev/null >>"$log" 2>&1 &
        ;;
    confined)
        "$SUPERVISE" --state-dir "$TN_STATE" run --profile "$ROOT/profiles/tenants/pg-a.toml" \
            </dev/null >>"$log" 2>&1 &
        ;;
    esac
    CHILD_PID=$!
    local _
    for _ in $(seq 300); do
        "$PG_BIN/pg_isready" -q -h "$TN_ADDR" -p 5432 && return 0
        alive "$CHILD_PID" || { tail -n 20 "$log" >&2; die "$mode: server exited"; }
        sleep 0.2
    done
    die "$mode: not ready on $TN_ADDR:5432"
}

# tn_measure MODE ARGS...: TPS of pgbench -S ARGS against MODE, or FAIL.
tn_measure() {
    local mode=$1 out tps
    shift
    tn_start "$mode" >&2
    "$PG_BIN/pgbench" -h "$TN_ADDR" -p 5432 -U postgres -S "$@" -T 2 postgres >/dev/null 2>&1 || true
    if out=$("$PG_BIN/pgbench" -h "$TN_ADDR" -p 5432 -U postgres -S "$@" -T "$PG_SECONDS" postgres 2>&1); then
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | awk '{ printf "%.0f", $1 }')
    else
        echo "pgbench ($mode $*) failed:" >&2
        tail -n 5 <<<"$out" >&2
        tps=FAIL
    fi
    stop_pid "$CHILD_PID" 30 >&2
    CHILD_PID=
    echo "${tps:-FAIL}"
}

bench_tenants() {
    hdr "(c) confinement: PostgreSQL bare vs unconfined vs confined (profiles/tenants/pg-a.toml)"
    ensure_postgres
    TN_STATE=$WORK/tenants
    mkdir -p "$TN_STATE"
    chmod 0755 "$TN_STATE"
    # First start (confined) creates the cluster in the tenant's home.
    "$SUPERVISE" --state-dir "$TN_STATE" run --profile "$ROOT/profiles/tenants/pg-a.toml" \
        </dev/null >>"$TN_STATE/init.log" 2>&1 &
    CHILD_PID=$!
    local _ range
    for _ in $(seq 300); do
        range=$("$SUPERVISE" --state-dir "$TN_STATE" label | awk '$1 == "pg-a" { print $5 }')
        [ -n "$range" ] && TN_ADDR=${range%.0/24}.1 &&
            "$PG_BIN/pg_isready" -q -h "$TN_ADDR" -p 5432 && break
        sleep 0.2
    done
    TN_DATA=$TN_STATE/home/pg-a/data
    "$PG_BIN/pgbench" -h "$TN_ADDR" -p 5432 -U postgres -i -s "$PG_SCALE" -q postgres >"$TN_STATE/pgbench-init.log" 2>&1 ||
        { tail -n 20 "$TN_STATE/init.log" "$TN_STATE/pgbench-init.log" >&2; die "pgbench -i on the confined tenant failed"; }
    stop_pid "$CHILD_PID" 30
    CHILD_PID=

    local round mode kind t
    local -A res=()
    for round in $(seq "$PG_ROUNDS"); do
        for kind in kept new; do
            for mode in bare unconfined confined; do
                if [ "$kind" = new ]; then
                    t=$(tn_measure "$mode" -C -c "$PG_CLIENTS" -j "$PG_JOBS") || true
                else
                    t=$(tn_measure "$mode" -c "$PG_CLIENTS" -j "$PG_JOBS") || true
                fi
                [ "$t" = FAIL ] && FAILED=1
                printf '  round %s %-5s %-11s %s tps\n' "$round" "$kind" "$mode:" "$t" >&2
                res[$kind-$mode]+="$t "
            done
        done
    done
    printf '\npgbench -S -c %s -j %s -T %s, scale %s, %s rounds, interleaved; address %s\n' \
        "$PG_CLIENTS" "$PG_JOBS" "$PG_SECONDS" "$PG_SCALE" "$PG_ROUNDS" "$TN_ADDR"
    printf '%-26s %-22s %10s %8s\n' "connections: mode" "TPS per round" "median" "÷ bare"
    local bm m
    for kind in kept new; do
        bm=$(tr ' ' '\n' <<<"${res[$kind-bare]}" | median)
        for mode in bare unconfined confined; do
            m=$(tr ' ' '\n' <<<"${res[$kind-$mode]}" | median)
            printf '%-26s %-22s %10s %8s\n' "$kind: $mode" \
                "${res[$kind-$mode]}" "$m" "$(ratio "$m" "$bm")"
        done
    done
    printf '(kept: %s connections for the whole run; new: pgbench -C, a connection per transaction)\n' "$PG_CLIENTS"
    printf '(kept: reads and writes are untracked in all three, so confined ≈ unconfined is\n'
    printf ' expected; new: each connection costs the confined tenant one serviced accept\n'
    printf ' with its label check, plus its read/write calls notified and continued)\n'
}
