#!/usr/bin/env bash
# `just demo`: PostgreSQL 15 under supervise with SQL rules (profiles/pg-demo.toml).
#
# Creates a throwaway cluster in a temporary directory owned by postgres, starts
#   supervise run --profile profiles/pg-demo.toml -- postgres -D DIR -k DIR \
#       -c listen_addresses=127.0.0.1 -p 5432
# in the background and creates the demo tables over the unix socket (DIR), which the
# profile does not track. Then it shows each rule side by side: on the left what the
# database holds (psql over the unix socket), on the right what a client gets over
# TCP 127.0.0.1:5432, the tracked port, where every byte goes through the supervisor:
#   rewrite        `dept = 20` in statements reading employee becomes `dept = 21`
#   mask           employee.ssn reads XXX-XX-XXXX (NULL stays NULL)
#   deny           statements touching salaries fail with SQLSTATE 42501; the session
#                  goes on, and inside BEGIN ... COMMIT nothing is committed
#   drop-session   a statement touching audit_log ends the session
#   fail closed    what the supervisor cannot prove keeps the rules is refused (42501)
# then a short pgbench -S through the rules, prints the supervisor's log lines about
# the tracked connections, stops it with SIGTERM and removes everything. Part 2
# (scripts/demo-mirror.sh) mirrors message prefixes under profiles/pg-mirror.toml and
# reads the pcapng file back with tshark. Part 3
# (scripts/demo-tenants.sh) runs two PostgreSQL servers as confined tenants under
# `supervise up profiles/tenants`: labels, homes, and A refused when it calls B. Installs
# postgresql-15 with apt-get when it is missing. Needs root. Build first:
# cargo build --release --workspace --bins (just demo does).
#
# Environment: SUPERVISE (binary, default target/release/supervise),
# SUPERVISE_LOG (supervisor log filter, default: info, and debug for the per-connection
# events of supervise::connection and supervise::supervisor).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=5432 # profiles/pg-demo.toml tracks this port
PROFILE=$ROOT/profiles/pg-demo.toml
require_root
# Build (a no-op when up to date), so the demo is one command on a fresh checkout.
(cd "$ROOT" && cargo build --release --workspace --bins)
require_release_bins
ensure_postgres
ensure_age
ensure_port_free "$PORT"

WORK=$(mktemp -d /tmp/supervise-demo.XXXXXX)
# Operators' keys and the node's allowed_signers: a directory of root's alone (the
# cluster's $WORK becomes postgres's, and the keyring trusts no file another user could
# change).
OPS=$(mktemp -d /tmp/supervise-demo-ops.XXXXXX)
SUP_PID=
cleanup() {
    local rc=$?
    if [ -n "$SUP_PID" ] && alive "$SUP_PID"; then
        echo "cleanup: stopping supervise ($SUP_PID)" >&2
        stop_pid "$SUP_PID" 20
    fi
    rm -rf "$WORK" "$OPS"
    exit "$rc"
}
trap cleanup EXIT

say "initdb a throwaway cluster in $WORK/data (owned by postgres)"
init_cluster "$WORK"

LOG=$WORK/supervise.log
say "supervise run --profile profiles/pg-demo.toml -- postgres -D $WORK/data -k $WORK -c listen_addresses=127.0.0.1 -p $PORT"
cd "$WORK"
SUPERVISE_LOG=${SUPERVISE_LOG:-info,supervise::connection=debug,supervise::supervisor=debug} "$SUPERVISE" run --profile "$PROFILE" \
    --allowed-signers "$OPS/allowed_signers" -- \
    "$PG_BIN/postgres" -D "$WORK/data" -k "$WORK" -c listen_addresses=127.0.0.1 -p "$PORT" \
    </dev/null 2>"$LOG" &
SUP_PID=$!
wait_pg_ready "$SUP_PID" "$PORT" "$LOG"
echo "supervise pid $SUP_PID; PostgreSQL accepts connections on 127.0.0.1:$PORT"
echo "the rules (profiles/pg-demo.toml):"
awk '/^kind / { if (r) print r; r = "  " $0; next }
     r && /^(table|column|from|to|replacement|objects) / { r = r ", " $0 }
     END { if (r) print r }' "$PROFILE"

# Every client runs under `timeout`, so a stuck connection cannot stall the demo.
PSQL=(timeout -k 5 30 "$PG_BIN/psql" -X -P null='(null)' -U postgres -d postgres)
# psql over the unix socket: untracked, the database as it is.
psql_unix() { "${PSQL[@]}" -h "$WORK" -p "$PORT" -v ON_ERROR_STOP=1 "$@"; }
# psql over TCP 127.0.0.1:5432: through the supervisor and its rules. Runs the script
# on stdin, echoing each statement, errors inline; never stops at an error.
psql_tcp() { "${PSQL[@]}" -h 127.0.0.1 -p "$PORT" -e -f - 2>&1; }

# side_by_side SQL: runs SQL over the unix socket (left) and over TCP (right).
side_by_side() {
    local sql=$1 left right
    left=$(psql_unix -c "$sql" 2>&1) || true
    right=$(psql_tcp <<<"$sql" | tail -n +2) || true
    printf '  %s\n\n' "$sql"
    paste -d '\t' <(printf '%s\n%s\n' "database, unix socket (untracked)" "$left") \
        <(printf '%s\n%s\n' "client, TCP :$PORT (through supervise)" "$right") |
        awk -F'\t' '{ printf "  %-44s | %s\n", $1, $2 }'
}

say "create the demo tables over the unix socket (untracked)"
psql_unix -q <<'SQL'
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL, ssn text);
INSERT INTO employee VALUES
    (1, 'alice', 20, '111-11-1111'), (2, 'bob',   20, '222-22-2222'),
    (3, 'carol', 21, '333-33-3333'), (4, 'dave',  21, '444-44-4444'),
    (5, 'erin',  22, NULL);
CREATE TABLE salaries (id int PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO salaries VALUES (1, 5000), (2, 6200);
CREATE TABLE audit_log (id int PRIMARY KEY, what text NOT NULL);
INSERT INTO audit_log VALUES (1, 'cluster created');
SQL
echo "employee (5 rows), salaries (2 rows), audit_log (1 row)"

say "rewrite: dept = 20 becomes dept = 21 in statements reading employee"
side_by_side "SELECT id, name, dept FROM employee WHERE dept = 20 ORDER BY id;"

say "mask: employee.ssn reads XXX-XX-XXXX, NULL stays NULL"
side_by_side "SELECT id, name, ssn FROM employee ORDER BY id;"

say "deny: salaries is refused with SQLSTATE 42501, and the same session goes on"
psql_tcp <<'SQL' || true
SELECT pg_backend_pid() AS session;
SELECT * FROM salaries;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT pg_backend_pid() AS same_session, 'still working' AS status;
SQL
echo "(the server itself raised the error, hence its CONTEXT line: the supervisor swapped the"
echo " statement for one that fails, so the server's transaction state stays true)"

say "deny inside a transaction: the server's transaction fails, COMMIT rolls back"
psql_tcp <<'SQL' || true
BEGIN;
INSERT INTO employee VALUES (6, 'mallory', 20, '666-66-6666');
UPDATE salaries SET amount = amount * 2;
COMMIT;
SQL
echo "-- afterwards, over the unix socket:"
psql_unix -c "SELECT count(*) AS mallory_rows FROM employee WHERE id = 6" \
    -c "SELECT id, amount FROM salaries ORDER BY id"

say "drop-session: a statement touching audit_log ends the session"
rc=0
psql_tcp <<'SQL' || rc=$?
SELECT 'before' AS step;
SELECT * FROM audit_log;
SELECT 'never printed' AS step;
SQL
echo "(psql exit status $rc: 2 = connection to the server lost)"
echo "-- a new connection works:"
psql_tcp <<'SQL'
SELECT 'new session' AS step, count(*) AS employees FROM employee;
SQL

say "diagnostics: every log line names its component (DPID); call that component back"
# One client session held open: its refusal is logged with the connection's DPID, and
# `supervise ctl` asks that very connection for its state over the control socket.
coproc CLIENT { "${PSQL[@]}" -h 127.0.0.1 -p "$PORT" -At 2>&1; }
echo "SELECT pg_backend_pid();" >&"${CLIENT[1]}"
read -r -t 10 backend <&"${CLIENT[0]}" || backend='?'
echo "SELECT * FROM salaries;" >&"${CLIENT[1]}"
read -r -t 10 refusal <&"${CLIENT[0]}" || refusal='?'
echo "client (backend pid $backend) got: $refusal"
echo "SELEC 1;" >&"${CLIENT[1]}"
read -r -t 10 syntax <&"${CLIENT[0]}" || syntax='?'
sleep 0.5
decision=$(grep "rule decision: refuse" "$LOG" | tail -n 1)
dpid=$(sed -E 's/^[^ ]+ +[A-Z]+ ([^:]+):.*/\1/' <<<"$decision")
echo "the supervisor's log line:"
echo "  $decision"
echo "PostgreSQL's own log line for the client's syntax error, stamped with the same DPID:"
grep -F "$dpid: " "$LOG" | grep -F 'syntax error' | tail -n 1 | sed 's/^/  /'
echo "$ supervise ctl state $dpid    (the connection, asked by its DPID)"
"$SUPERVISE" ctl --json state "$dpid" |
    grep -oE '"(dpid|peer|backend_pids|transaction_status|peer_to_tenant|tenant_to_peer)":(\[[^]]*\]|"[^"]*"|\{[^}]*\})' |
    sed 's/^/  /'
echo "  (and the last 16 messages by type, spooled bytes, parked calls: ctl state shows all)"
echo "$ supervise ctl selftest pg-demo/pg-clients/r2    (the deny rule replays its fixture)"
"$SUPERVISE" ctl selftest pg-demo/pg-clients/r2 | grep -E '"(passed|detail)"'
echo "$ supervise ctl metrics | grep rule_hits"
"$SUPERVISE" ctl metrics | grep '^supervise_rule_hits_total'

say "a signed privileged request: alice dumps that connection's spool; only 'forensics' can read it"
# alice signs with her ssh key (ssh-keygen -Y sign); the result is sealed with age to
# another identity (forensics), and signed by the node's host key.
ssh-keygen -q -t ed25519 -N '' -C alice@ops -f "$OPS/alice"
age-keygen -o "$OPS/forensics.key" 2>/dev/null
FORENSICS=$(age-keygen -y "$OPS/forensics.key")
echo "alice@ops permit=\"dump-spool\",tenants=\"pg-demo\" $(cut -d' ' -f1,2 "$OPS/alice.pub")" >"$OPS/allowed_signers"
echo "allowed_signers: $(cut -c1-90 "$OPS/allowed_signers")…"
echo "$ supervise request --key alice --recipient $FORENSICS -o spool.age dump-spool $dpid"
"$SUPERVISE" request --key "$OPS/alice" --recipient "$FORENSICS" -o "$OPS/spool.age" dump-spool "$dpid" 2>&1 |
    sed 's/^/  /'
echo "$ head -c 120 spool.age"
head -c 120 "$OPS/spool.age" | sed 's/^/  /'
echo
echo "$ age -d -i forensics.key spool.age    (the connection's spool and recent messages)"
age -d -i "$OPS/forensics.key" "$OPS/spool.age" |
    grep -E '"(op|target|node|name|len|transaction_status)"' | tr -d ' ' | paste -sd' ' | cut -c1-300 | sed 's/^/  /'
echo "$ age -d -i alice's identity: she signed it, but cannot read it"
age-keygen -o "$OPS/alice.age" 2>/dev/null
age -d -i "$OPS/alice.age" "$OPS/spool.age" 2>&1 | sed 's/^/  /' || true
NODE=$("$SUPERVISE" ctl --json node pg-demo | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["node"]); open(sys.argv[1],"w").write(d["result_signers"]+"\n")' "$OPS/node_signers")
echo "$ ssh-keygen -Y verify -I $NODE -n supervise-result -s spool.age.sig < spool.age"
ssh-keygen -Y verify -f "$OPS/node_signers" -I "$NODE" -n supervise-result -s "$OPS/spool.age.sig" <"$OPS/spool.age" 2>&1 |
    sed 's/^/  /'
echo "$ the same request by mallory (a key the node does not trust):"
ssh-keygen -q -t ed25519 -N '' -C mallory -f "$OPS/mallory"
"$SUPERVISE" request --key "$OPS/mallory" --recipient "$FORENSICS" -o "$OPS/m.age" dump-spool "$dpid" 2>&1 |
    sed 's/^/  /' || true
echo "the keyring's audit (pg-demo/@keyring):"
grep -F 'pg-demo/@keyring' "$LOG" | grep -F 'signed request' | tail -n 2 | cut -c1-260 | sed 's/^/  /'
exec {CLIENT[1]}>&-
wait "$CLIENT_PID" 2>/dev/null || true

say "fail closed: what the supervisor cannot prove keeps the rules is refused, with the reason"
psql_tcp <<'SQL' || true
SELECT upper(ssn) FROM employee;
SELECT * FROM U&"s\0061laries";
SELECT name FROM employee WHERE dept BETWEEN 20 AND 20;
SELECT query_to_xml('SELECT * FROM sal' || 'aries', true, false, '');
SELECT name FROM employee WHERE dept = '020' ORDER BY name;
SQL
echo "(an expression over the masked column, a Unicode-escaped name, a predicate the rewrite"
echo " cannot prove and a function that runs SQL are refused; '020' means 20 and is rewritten)"

say "pgbench -i -s 1 over the unix socket, then pgbench -S -c 4 -j 2 -T 5 over TCP (through the rules)"
timeout -k 5 60 "$PG_BIN/pgbench" -h "$WORK" -p "$PORT" -U postgres -i -s 1 -q postgres 2>&1 | tail -n 1
timeout -k 5 60 "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -S -c 4 -j 2 -T 5 postgres 2>&1 |
    grep -E '^(number of|latency average|tps)'

say "stopping: SIGTERM to supervise (forwarded to postgres: smart shutdown)"
stop_pid "$SUP_PID" 30
rc=$STOP_RC
SUP_PID=
echo "supervise exited with status $rc"

say "supervisor log lines about the tracked stream (pg-clients, port $PORT)"
# The log file holds the supervisor's lines and PostgreSQL's own stderr, stamped
# (records ending in "fd=stderr pid=N").
sup_lines=$(grep -vE ' fd=stderr pid=[0-9]+$' "$LOG" || true)
# One "accepted" and one "connection closed" line (with its byte accounting) per
# connection, and what the rules did; the rest is in the log at debug level.
tracked=$(grep -Ei "pg-clients|$PORT|accept|connection|stream|tracked|rule|deny|denied|drop|mask|rewrit" <<<"$sup_lines" |
    grep -vE "handed to tenant|released tracked socket" || true)
if [ -n "$tracked" ]; then
    n=$(wc -l <<<"$tracked")
    head -n 40 <<<"$tracked"
    [ "$n" -le 40 ] || echo "... ($n lines in all)"
else
    echo "(no supervisor line mentions the stream; last 20 lines of its log:)"
    tail -n 20 "$LOG"
fi

[ "$rc" = 0 ] || die "supervise exited with status $rc (expected 0 after a smart shutdown)"

say "part 2: mirroring message prefixes to a pcapng file, read back by tshark (scripts/demo-mirror.sh)"
"$ROOT/scripts/demo-mirror.sh"

say "part 3: two PostgreSQL servers as confined, labeled tenants (scripts/demo-tenants.sh)"
"$ROOT/scripts/demo-tenants.sh"
say "demo done"
