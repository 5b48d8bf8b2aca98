//! 1. Extended protocol and pipelining.

use crate::contract::*;
use crate::pgcluster::wire::{self, Raw, Target};
use crate::pgcluster::*;
use crate::runners::*;
use std::time::Duration;

/// Extended protocol without Describe, and pipelining that makes the client's
/// Describe describe something else than what is executed (raw client).
#[test]
fn extended_protocol_and_pipelining() {
    let _serial = serial();
    let mut run = Run::start("extended_protocol_and_pipelining", attack_options(""));
    use wire::{bind, close, describe, execute, flush, parse, pbes, query, sync};
    let ssn = "SELECT ssn FROM employee ORDER BY id";

    // --- Parse/Bind/Execute/Sync, no Describe ---
    run.raw(
        "ext-no-describe text unnamed",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes(ssn, &[])], 1),
    );
    run.raw(
        "ext-no-describe binary unnamed",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes(ssn, &[1])], 1),
    );
    run.raw(
        "ext-no-describe SELECT * binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes("SELECT * FROM employee", &[1])], 1),
    );
    run.raw(
        "ext-no-describe alias binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes("SELECT ssn AS x FROM employee e", &[1])], 1),
    );
    run.raw(
        "ext-no-describe mixed formats name text, ssn binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes("SELECT name, ssn FROM employee", &[0, 1])], 1),
    );
    run.raw(
        "ext-no-describe named statement and portal",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s1", ssn, &[]),
                bind("p1", "s1", &[], &[], &[0]),
                execute("p1", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "ext-no-describe max_rows 1 then repeated Execute (PortalSuspended)",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("", ssn, &[]),
                bind("p", "", &[], &[], &[0]),
                execute("p", 1),
                execute("p", 1),
                execute("p", 2),
                execute("p", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "ext-no-describe binary max_rows across Syncs in a transaction",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "BEGIN");
            r.send_all(&[
                parse("s6", ssn, &[]),
                bind("p6", "s6", &[], &[], &[1]),
                execute("p6", 2),
                sync(),
            ]);
            r.read_until(1);
            for max in [2, 0] {
                r.send_all(&[execute("p6", max), sync()]);
                r.read_until(1);
            }
            q(&mut r, "COMMIT");
            (r, Vec::new())
        },
    );
    run.raw(
        "ext-no-describe statement bound twice, second portal binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s7", "SELECT id, ssn FROM employee WHERE id = $1", &[23]),
                bind("a", "s7", &[0], &[Some(b"1")], &[0]),
                execute("a", 0),
                bind("b", "s7", &[0], &[Some(b"2")], &[1]),
                execute("b", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "ext-no-describe Flush instead of Sync, then Sync",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("", ssn, &[]),
                bind("", "", &[], &[], &[1]),
                execute("", 0),
                flush(),
            ]);
            r.drain_for(Duration::from_millis(700));
            r.send(&sync());
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "ext-no-describe text [in BEGIN]",
        Expect::RefuseOrMask,
        false,
        &raw_batch_in_tx(vec![pbes(ssn, &[])], 1),
    );
    run.raw(
        "ext-no-describe salaries binary [in BEGIN]",
        Expect::Refuse,
        false,
        &raw_batch_in_tx(vec![pbes("SELECT * FROM salaries", &[1])], 1),
    );

    // --- pipelining ---
    run.raw(
        "pipe Describe S1 then Execute S2",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s1", "SELECT name FROM employee ORDER BY id", &[]),
                parse("s2", ssn, &[]),
                describe(b'S', "s1"),
                bind("p2", "s2", &[], &[], &[0]),
                execute("p2", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe Describe portal A then Execute portal B",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("a", "SELECT name FROM employee ORDER BY id", &[]),
                parse("b", ssn, &[]),
                bind("pa", "a", &[], &[], &[]),
                bind("pb", "b", &[], &[], &[]),
                describe(b'P', "pa"),
                execute("pb", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe Close + re-Parse of a name before the Describe reply",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s", "SELECT name, ssn FROM employee ORDER BY id", &[]),
                describe(b'S', "s"),
                close(b'S', "s"),
                parse("s", "SELECT ssn, name FROM employee ORDER BY id", &[]),
                bind("", "s", &[], &[], &[0]),
                execute("", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe harmless \"s\" described, then Close + re-Parse as ssn, Execute without Describe",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("s", "SELECT name FROM project ORDER BY id", &[]),
                describe(b'S', "s"),
                sync(),
            ]);
            r.read_until(1);
            r.send_all(&[
                close(b'S', "s"),
                parse("s", ssn, &[]),
                bind("", "s", &[], &[], &[0]),
                execute("", 0),
                sync(),
            ]);
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "pipe unnamed statement replaced by a second Parse (no Close)",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("", "SELECT name FROM employee ORDER BY id", &[]),
                describe(b'S', ""),
                parse("", ssn, &[]),
                bind("", "", &[], &[], &[1]),
                execute("", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe same-shape swap: text column of project described, ssn executed",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("x", "SELECT name FROM project", &[]),
                bind("px", "x", &[], &[], &[]),
                describe(b'P', "px"),
                close(b'P', "px"),
                parse("y", ssn, &[]),
                bind("px", "y", &[], &[], &[]),
                execute("px", 0),
                sync(),
            ],
            1,
        ),
    );
    {
        let mut msgs = Vec::new();
        for i in 0..12 {
            let sql = if i % 3 == 2 {
                format!("SELECT ssn AS c{i} FROM employee WHERE id = {}", i % 5 + 1)
            } else {
                format!("SELECT name AS c{i} FROM project WHERE id = {}", i % 3 + 1)
            };
            let name = format!("m{i}");
            msgs.push(parse(&name, &sql, &[]));
            if i % 4 == 0 {
                // A statement parsed earlier (crossed: not the one executed next).
                msgs.push(describe(b'S', &format!("m{}", i / 2)));
            }
            msgs.push(bind(&name, &name, &[], &[], &[(i % 2) as i16]));
            msgs.push(execute(&name, 0));
        }
        msgs.push(sync());
        run.raw(
            "pipe 12 statements, crossed Describes, one Sync",
            Expect::RefuseOrMask,
            true,
            &raw_batch(msgs, 1),
        );
    }
    run.raw(
        "pipe extended batch then a simple Query of ssn before Sync",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("", "SELECT name FROM employee", &[]),
                bind("", "", &[], &[], &[]),
                describe(b'P', ""),
                query("SELECT ssn AS v FROM employee"),
                execute("", 0),
                sync(),
            ],
            2,
        ),
    );
    run.raw(
        "pipe portal from a cursor-like named portal, FETCH via Execute after Close of the statement",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                query("BEGIN"),
                parse("k", ssn, &[]),
                bind("kp", "k", &[], &[], &[0]),
                close(b'S', "k"),
                execute("kp", 3),
                execute("kp", 0),
                sync(),
                query("COMMIT"),
            ],
            3,
        ),
    );
    run.raw(
        "pipe Describe S1 then Execute S2 [in BEGIN]",
        Expect::RefuseOrMask,
        false,
        &raw_batch_in_tx(
            vec![
                parse("s1", "SELECT name FROM employee ORDER BY id", &[]),
                parse("s2", ssn, &[]),
                describe(b'S', "s1"),
                bind("p2", "s2", &[], &[], &[0]),
                execute("p2", 0),
                sync(),
            ],
            1,
        ),
    );
    // Deny through the extended protocol, pipelined behind a harmless statement.
    run.raw(
        "pipe harmless Execute then salaries without Describe",
        Expect::Refuse,
        true,
        &raw_batch(
            vec![
                parse("", "SELECT 1", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                parse("z", "SELECT note, amount FROM salaries", &[]),
                bind("", "z", &[], &[], &[0]),
                execute("", 0),
                sync(),
            ],
            1,
        ),
    );
    run.finish();
}
