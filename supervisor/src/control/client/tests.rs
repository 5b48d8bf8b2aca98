//! The client's parsing and formatting, and `run` against live servers.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::control::{Backend, Server};
use crate::profile::duration::parse_duration;

/// A tenant named by its socket: lists itself, one metric, fails on `TENANT/bad`.
struct Fake(&'static str);

impl Backend for Fake {
    fn serve(&self, op: Op) -> Result<Value, Failure> {
        match op {
            Op::List => Ok(json!([{"dpid": self.0, "kind": "tenant", "ops": ["state", "level"]}])),
            Op::Metrics => Ok(json!(format!("up{{tenant=\"{}\"}} 1\n# EOF\n", self.0))),
            Op::State { dpid } if dpid.ends_with("/bad") => Err(Failure::new("unknown_dpid", dpid)),
            op => Ok(serde_json::to_value(op).unwrap()),
        }
    }
}

#[test]
fn durations_parse_and_bad_ones_are_named() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    for bad in [
        "",
        "2",
        "s",
        "2x",
        "-1s",
        "0s",
        "1.5s",
        "99999999999999999999h",
    ] {
        let e = parse_duration(bad).unwrap_err();
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
}

#[test]
fn metrics_merge_into_one_exposition_and_lists_into_one_table() {
    let merged = merge_metrics(&["a 1\n# EOF\n".into(), "b 2\n# EOF".into()]);
    assert_eq!(merged, "a 1\nb 2\n# EOF\n");
    // A family both tenants expose appears once, with both tenants' samples.
    let one = "# TYPE x counter\nx_total{dpid=\"a\"} 1\n# TYPE y gauge\ny{dpid=\"a\"} 2\n# EOF\n";
    let two = "# TYPE x counter\nx_total{dpid=\"b\"} 3\n# EOF\n";
    assert_eq!(
        merge_metrics(&[one.into(), two.into()]),
        "# TYPE x counter\nx_total{dpid=\"a\"} 1\nx_total{dpid=\"b\"} 3\n# TYPE y gauge\ny{dpid=\"a\"} 2\n# EOF\n"
    );
    let items = components(
        json!({"components": [{"dpid": "pg/@label", "kind": "label", "ops": ["state"]}]}),
    );
    assert_eq!(
        table(&items),
        "DPID       KIND   OPS\npg/@label  label  state\n"
    );
}

#[test]
fn run_routes_by_tenant_and_exits_by_outcome() {
    let state = tempfile::tempdir().unwrap();
    let serve = |t: &'static str| {
        Server::start(
            &super::super::socket_path(state.path(), t),
            Arc::new(Fake(t)),
        )
        .unwrap()
    };
    let (_a, _b) = (serve("a"), serve("b"));
    drop(
        std::os::unix::net::UnixListener::bind(super::super::socket_path(state.path(), "c"))
            .unwrap(),
    );
    let run = |op: CtlCommand| run(state.path(), CtlArgs { op, json: false });
    let state_of = |dpid: &str| CtlCommand::State { dpid: dpid.into() };
    assert_eq!(
        run(CtlCommand::List { tenant: None }),
        0,
        "c is stale: noted and skipped"
    );
    assert_eq!(run(CtlCommand::Metrics { tenant: None }), 0);
    assert_eq!(
        run(CtlCommand::Metrics {
            tenant: Some("b".into())
        }),
        0
    );
    assert_eq!(run(state_of("a/s/c1")), 0);
    assert_eq!(run(state_of("a/bad")), SERVER_ERROR);
    assert_eq!(run(state_of("a//x")), USAGE);
    assert_eq!(
        run(CtlCommand::List {
            tenant: Some("a/b".into())
        }),
        USAGE
    );
    assert_eq!(run(state_of("c")), UNREACHABLE, "stale");
    assert_eq!(run(state_of("zz")), UNREACHABLE, "absent");
    // These servers have no keyring: `node` is refused, not faked.
    assert_eq!(run(CtlCommand::Node { tenant: "a".into() }), SERVER_ERROR);
    assert_eq!(
        run(CtlCommand::Node {
            tenant: "zz".into()
        }),
        UNREACHABLE
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        super::run(
            empty.path(),
            CtlArgs {
                op: CtlCommand::List { tenant: None },
                json: true
            }
        ),
        UNREACHABLE
    );
}
