#!/usr/bin/env bash
# Part 2 of `just demo`: mirroring (profiles/pg-mirror.toml: pg-demo's rules plus a
# mirror). A throwaway cluster under supervise; psql and pgbench over the tracked port;
# then the pcapng file the mirror wrote, read by tshark: every Query as the client
# wrote it (the refused one too), DataRows cut to their 5-byte header with their full
# length kept, a marker (the refusal's SQLSTATE 42501) and an unknown peer (::1)
# capturing whole, a runtime change, and the real ssn in no byte written. Installs
# tshark with apt-get when it is missing. Needs root and release builds.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=5432 # profiles/pg-mirror.toml tracks this port
PROFILE=$ROOT/profiles/pg-mirror.toml
require_root
require_release_bins
ensure_postgres
if ! command -v tshark >/dev/null; then
    echo "installing tshark (apt-get install tshark) ..." >&2
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tshark >/dev/null
fi
ensure_port_free "$PORT"

WORK=$(mktemp -d /tmp/supervise-demo-mirror.XXXXXX)
# The state dir is root's alone (the cluster's $WORK becomes postgres's): the keyring
# trusts nothing another user could change.
STATE=$(mktemp -d /tmp/supervise-demo-mirror-state.XXXXXX)
SUP_PID=
cleanup() {
    local rc=$?
    if [ -n "$SUP_PID" ] && alive "$SUP_PID"; then
        stop_pid "$SUP_PID" 20
    fi
    rm -rf "$WORK" "$STATE"
    exit "$rc"
}
trap cleanup EXIT
ctl() { "$SUPERVISE" --state-dir "$STATE" ctl "$@"; }
psql_tcp() { timeout -k 5 60 "$PG_BIN/psql" -X -A -t -h "$1" -p "$PORT" -U postgres -d postgres "${@:2}"; }

say "mirroring: supervise run --profile profiles/pg-mirror.toml (pg-demo's rules + [mirror]) -- postgres ... -c listen_addresses='127.0.0.1,::1'"
init_cluster "$WORK"
LOG=$WORK/supervise.log
mkdir -p "$STATE"
cd "$WORK"
"$SUPERVISE" --state-dir "$STATE" run --profile "$PROFILE" -- \
    "$PG_BIN/postgres" -D "$WORK/data" -k "$WORK" -c "listen_addresses=127.0.0.1,::1" -p "$PORT" \
    </dev/null 2>"$LOG" &
SUP_PID=$!
cd "$ROOT"
wait_pg_ready "$SUP_PID" "$PORT" "$LOG"
timeout -k 5 60 "$PG_BIN/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d postgres <<'SQL'
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL, ssn text);
INSERT INTO employee VALUES (1, 'alice', 20, '111-11-1111'), (2, 'bob', 20, '222-22-2222');
CREATE TABLE salaries (id int PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO salaries VALUES (1, 5000);
SQL
echo "the mirror: client messages whole; DataRow: header; the rest: 64 bytes; to $STATE/mirror/pg-N.pcapng"
echo "triggers: SQLSTATE 42501/28P01 keeps the session whole; a peer unseen for 1 h is captured whole"

say "psql from ::1 (a peer never seen: captured whole), then from 127.0.0.1 (DataRow headers only)"
psql_tcp ::1 -c "SELECT name, ssn FROM employee WHERE id = 1"
psql_tcp 127.0.0.1 -c "SELECT name, ssn FROM employee" -c "SELECT amount FROM salaries" \
    -c "SELECT name, ssn FROM employee WHERE id = 2" 2>&1 || true
echo "(the refusal's 42501 fired the marker: that session's later rows are mirrored whole)"
grep -h 'mirror trigger fired' "$LOG" | sed 's/^/  /'

say "runtime change, by a signed request: set-capture pg-mirror/pg-clients none (then reset)"
# An operator key trusted for set-capture; the (small) result is sealed to its own
# ssh key. The whole flow with a second identity is in part 1.
ssh-keygen -q -t ed25519 -N '' -C auditor -f "$WORK/auditor"
echo "auditor permit=\"set-capture\",tenants=\"pg-mirror\" $(cut -d' ' -f1,2 "$WORK/auditor.pub")" >"$STATE/allowed_signers"
capture() {
    echo "$ supervise request --key auditor --recipient auditor.pub set-capture pg-mirror/pg-clients $1"
    "$SUPERVISE" --state-dir "$STATE" request --key "$WORK/auditor" --recipient "$WORK/auditor.pub" \
        -o "$WORK/capture.age" set-capture pg-mirror/pg-clients "$1" 2>&1 | sed 's/^/  /'
}
capture none
psql_tcp 127.0.0.1 -c "SELECT 'this session is not mirrored'" >/dev/null
capture reset
timeout -k 5 60 "$PG_BIN/pgbench" -h "$WORK" -p "$PORT" -U postgres -i -s 1 -q postgres 2>&1 | tail -n 1
timeout -k 5 60 "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -n -S -c 2 -j 2 -t 500 postgres 2>&1 |
    grep -E '^(number of transactions actually|tps)'
echo "$ supervise ctl state pg-mirror/@mirror"
ctl --json state pg-mirror/@mirror | grep -E '"(messages_mirrored|captured_bytes|original_bytes|redacted_bytes|trigger_firings)"' -A0
echo "$ supervise ctl selftest pg-mirror/@sink/file"
ctl selftest pg-mirror/@sink/file | grep -E '"(passed)"' | head -1
stop_pid "$SUP_PID" 30
SUP_PID=
[ "$STOP_RC" = 0 ] || die "supervise exited with status $STOP_RC"

FILES=("$STATE"/mirror/pg-*.pcapng)
say "tshark -r ${FILES[0]#"$WORK"/} -Y pgsql  (the mirror's file, read by Wireshark's dissector)"
for f in "${FILES[@]}"; do
    tshark -r "$f" -d "tcp.port==$PORT,pgsql" -Y pgsql -T fields -E separator=/t \
        -e frame.len -e frame.cap_len -e tcp.srcport -e pgsql.type -e pgsql.query 2>/dev/null
done >"$WORK/decoded.txt"
echo "frame length | captured | from port | message | query   (first 24 PostgreSQL frames)"
head -n 24 "$WORK/decoded.txt" | sed 's/\t/ | /g; s/^/  /'
printf '  ... %s frames in all; Query messages: %s; DataRows cut to their header: %s of %s\n' \
    "$(wc -l <"$WORK/decoded.txt")" "$(grep -c 'Simple query' "$WORK/decoded.txt" || true)" \
    "$(awk -F'\t' '$4 == "Data row" && $2 < $1' "$WORK/decoded.txt" | wc -l)" \
    "$(grep -c 'Data row' "$WORK/decoded.txt" || true)"
echo "the refused statement, as the client wrote it:"
grep 'FROM salaries' "$WORK/decoded.txt" | sed 's/\t/ | /g; s/^/  /'
if grep -qa '111-11-1111' "${FILES[@]}"; then
    die "the real ssn reached the mirror"
fi
echo "the real ssn (111-11-1111) appears in no byte of the mirror's files; the masked XXX-XX-XXXX does, $(cat "${FILES[@]}" | grep -oa 'XXX-XX-XXXX' | wc -l) times"
grep -q 'this session is not mirrored' "$WORK/decoded.txt" && die "the capture change did not take effect"
echo "the session run while the capture was 'none' is not in the file"
