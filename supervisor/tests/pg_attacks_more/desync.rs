//! 2. Parser disagreement (standard_conforming_strings off) and reply-queue desync.

use crate::contract::*;
use crate::pgcluster::wire::{self, Msg, Raw, Target};
use crate::pgcluster::*;
use crate::runners::*;
use std::time::Duration;

fn copy_data(b: &[u8]) -> Vec<u8> {
    wire::build(b'd', b)
}

fn copy_done() -> Vec<u8> {
    wire::build(b'c', &[])
}

/// A StartupMessage with protocol 3.2 (196610).
fn startup_32(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196610i32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = (i32::try_from(body.len() + 4).expect("fits"))
        .to_be_bytes()
        .to_vec();
    m.extend_from_slice(&body);
    m
}

/// sqlparser always reads '…' with standard_conforming_strings on; with it off the
/// server reads `\'` as a quote, so the two see different code and the masked-column
/// check and the rewrite judge a statement the server does not run. Then protocol
/// sequences where the server answers nothing to a message the engine queued a reply
/// for: every later reply is matched with the wrong request.
#[test]
fn parser_disagreement_and_reply_queue_desync() {
    let _serial = serial();
    let mut run = Run::start("parser_disagreement_and_reply_queue_desync");
    use wire::{bind, close, describe, execute, flush, parse, pbes, query, sync};
    use Expect::*;
    let scs_off = "-c standard_conforming_strings=off";

    // --- standard_conforming_strings=off: sqlparser reads another statement ---
    run.raw(
        "scs=off (startup option): 'a\\' AS q, ' || upper(ssn) || ', ' FROM employee -- '",
        RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &options_params(scs_off));
            q(&mut r, SCS_OFF_MASK);
            (r, Vec::new())
        },
    );
    run.raw(
        "scs=off (SET mid-session, separate round trips): upper(ssn) hidden from sqlparser",
        RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "SET standard_conforming_strings = off");
            q(&mut r, SCS_OFF_MASK);
            (r, Vec::new())
        },
    );
    run.raw(
        "scs=off (SET LOCAL in a transaction): upper(ssn) hidden from sqlparser",
        RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "BEGIN");
            q(&mut r, "SET LOCAL standard_conforming_strings = off");
            q(&mut r, SCS_OFF_MASK);
            q(&mut r, "COMMIT");
            (r, Vec::new())
        },
    );
    run.raw(
        "scs=off extended protocol (Parse/Bind/Execute, no Describe): upper(ssn) hidden",
        RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &options_params(scs_off));
            r.send_all(&[pbes(SCS_OFF_MASK, &[0])]);
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "scs=off rewrite: … FROM employee WHERE dept = 20 hidden from sqlparser",
        Rewrite,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &options_params(scs_off));
            q(&mut r, SCS_OFF_REWRITE);
            (r, Vec::new())
        },
    );
    run.psql_env(
        "psql PGOPTIONS scs=off: upper(ssn) hidden from sqlparser",
        &format!("{SCS_OFF_MASK}\n;"),
        RefuseOrMask,
        true,
        &[("PGOPTIONS", scs_off)],
    );
    run.raw(
        "scs=off deny: the same shape on salaries (lexer reads as the server)",
        Refuse,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &options_params(scs_off));
            q(&mut r, SCS_OFF_DENY);
            (r, Vec::new())
        },
    );

    // --- reply queue: a Query the server skips (extended-protocol error, no Sync yet) ---
    // The server discards every message up to Sync after an error in the extended
    // protocol, a Query included: it gets no reply, the engine's queue keeps an entry.
    run.raw(
        "desync: Parse/Bind/Execute 1/0 + Query + Sync, then SELECT ssn",
        RefuseOrMask,
        false,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("", "SELECT 1/0", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                query("SELECT 'skipped-by-' || 'the-server'"),
                sync(),
            ]);
            let first = r.read_until(1);
            if has_data(&first, "skipped-by-the-server") {
                v.push("the server did answer the Query (premise broken)".into());
            }
            let got = q(&mut r, "SELECT ssn FROM employee ORDER BY id");
            if !has_data(&got, MASK) {
                v.push(format!(
                    "SELECT ssn after the skipped Query: [{}]",
                    summaries(&got)
                ));
            }
            (r, v)
        },
    );
    run.raw(
        "desync: Execute error + refused Query (salaries) + Sync, then SELECT e.ssn",
        RefuseOrMask,
        false,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("", "SELECT 1/0", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                query("SELECT note FROM salaries"),
                sync(),
            ]);
            r.read_until(1);
            q(&mut r, "SELECT e.ssn AS x FROM employee e ORDER BY id");
            (r, Vec::new())
        },
    );
    // The same premise when the error reaches the supervisor before the client's next
    // messages: those are queued as requests the server will answer, but it skips
    // them up to Sync, so the Sync's ReadyForQuery finds them at the queue's head and
    // the engine ends the session (a pipelining driver's ordinary traffic).
    run.raw(
        "desync: Execute error + Flush; after the error, Parse/Bind/Execute SELECT 1 + Sync",
        NoLeak,
        false,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("", "SELECT 1/0", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                flush(),
            ]);
            r.drain_for(Duration::from_millis(500));
            r.send_all(&[pbes("SELECT 1", &[0])]);
            let got = r.read_until(1);
            if got.last().and_then(Msg::ready) != Some(b'I') {
                v.push(format!(
                    "the Sync after the error got no ReadyForQuery: [{}] (eof {})",
                    summaries(&got),
                    r.eof
                ));
            }
            (r, v)
        },
    );
    // Two COPY FROM STDIN in one Query: the engine believes the copy is over after the
    // first CopyDone, so a Sync sent during the second one (which the server ignores)
    // is queued as a real Sync.
    run.raw(
        "desync: Sync during the second COPY FROM STDIN of one Query, then SELECT ssn",
        RefuseOrMask,
        false,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "CREATE TEMP TABLE cin (x text)");
            r.send(&query("COPY cin FROM STDIN; COPY cin FROM STDIN"));
            r.drain_for(Duration::from_millis(400));
            r.send_all(&[copy_data(b"a\n"), copy_done()]);
            r.drain_for(Duration::from_millis(400));
            r.send_all(&[sync(), copy_data(b"b\n"), copy_done()]);
            r.read_until(1);
            r.drain_for(Duration::from_millis(300));
            q(&mut r, "SELECT ssn FROM employee ORDER BY id");
            (r, Vec::new())
        },
    );

    // --- nesting beyond sqlparser's recursion limit around the masked column ---
    let deep = format!(
        "SELECT {}ssn{} FROM employee;",
        "(".repeat(60),
        ")".repeat(60)
    );
    run.psql(
        "60 nested parentheses around ssn",
        &deep,
        RefuseOrMask,
        true,
    );
    let deep_fn = format!(
        "SELECT {}ssn{} FROM employee;",
        "upper(".repeat(55),
        ")".repeat(55)
    );
    run.psql("55 nested upper() around ssn", &deep_fn, RefuseOrMask, true);

    // --- protocol edges that should hold (judged: no leak) ---
    run.raw(
        "protocol 3.2 startup with a _pq_ option (NegotiateProtocolVersion), then an alias",
        RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::connect(t);
            let mut params = wire::default_params();
            params.push(("_pq_.supervise_probe", "1"));
            r.send(&startup_32(&params));
            r.read_until(1);
            q(&mut r, "SELECT e.ssn AS x FROM employee e");
            (r, Vec::new())
        },
    );
    run.raw(
        "desync: Describe of a missing portal + Execute + Flush; after the error, Close of unnamed + Sync",
        NoLeak,
        false,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("", "SELECT ssn FROM employee", &[]),
                bind("", "", &[], &[], &[0]),
                describe(b'P', "nosuch"),
                execute("", 0),
                flush(),
            ]);
            r.drain_for(Duration::from_millis(500));
            r.send_all(&[close(b'P', ""), close(b'S', ""), sync()]);
            r.read_until(1);
            r.send_all(&[
                parse("", "SELECT ssn AS y FROM employee", &[]),
                bind("", "", &[], &[], &[1]),
                execute("", 0),
                sync(),
            ]);
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "SQL cursor executed as a protocol portal, row limit, then a Query mid-pipeline",
        RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "BEGIN");
            q(
                &mut r,
                "DECLARE c CURSOR FOR SELECT ssn AS x FROM employee ORDER BY id",
            );
            r.send_all(&[
                execute("c", 2),
                query("FETCH 1 FROM c"),
                execute("c", 0),
                sync(),
            ]);
            r.read_until(2);
            q(&mut r, "COMMIT");
            (r, Vec::new())
        },
    );
    run.finish();
}
