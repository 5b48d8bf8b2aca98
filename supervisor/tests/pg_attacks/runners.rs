//! The runners: one cluster per #[test] ([`Run`]) and the three kinds of client an
//! attack runs with (psql, the `postgres` crate, the raw wire client), each with its
//! control over the untracked UNIX socket.

use crate::contract::*;
use crate::pgcluster::wire::{self, Msg, Raw, Target};
use crate::pgcluster::*;
use postgres::types::ToSql;
use std::sync::{Arc, Mutex};

/// One cluster and the suite judging the attacks made on it.
pub(crate) struct Run {
    pub(crate) c: Cluster,
    pub(crate) s: Suite,
}

/// Errors psql printed (VERBOSITY verbose: `ERROR:  42501: message`).
pub(crate) fn psql_errors(stderr: &str) -> Vec<Err> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        for sev in ["ERROR", "FATAL", "PANIC"] {
            let pat = format!("{sev}:  ");
            if let Some(i) = line.find(&pat) {
                let rest = &line[i + pat.len()..];
                let b = rest.as_bytes();
                let (code, message) =
                    if b.len() >= 7 && b[5] == b':' && b[..5].iter().all(u8::is_ascii_alphanumeric)
                    {
                        (rest[..5].to_owned(), rest[7..].to_owned())
                    } else {
                        (String::new(), rest.to_owned())
                    };
                out.push(Err {
                    severity: sev.to_owned(),
                    code,
                    message,
                });
            }
        }
    }
    out
}

fn psql_closed(p: &Psql) -> bool {
    p.stderr.contains("server closed the connection")
        || p.stderr.contains("connection to server was lost")
        || p.stderr.contains("no connection to the server")
        || p.code == Some(2)
}

/// Runs a raw query on a logged-in connection, returns the messages up to `Z`.
pub(crate) fn q(r: &mut Raw, sql: &str) -> Vec<Msg> {
    r.send(&wire::query(sql));
    r.read_until(1)
}

pub(crate) fn has_data(msgs: &[Msg], text: &str) -> bool {
    msgs.iter()
        .filter_map(Msg::data_row)
        .flatten()
        .flatten()
        .any(|v| contains(&v, text.as_bytes()))
}

pub(crate) fn summaries(msgs: &[Msg]) -> String {
    let v: Vec<String> = msgs.iter().map(Msg::summary).collect();
    v.join(", ")
}

/// The answer to one crate attack.
pub(crate) struct Ext {
    client: Option<postgres::Client>,
    obs: Obs,
}

impl Ext {
    fn record_error(&mut self, e: &postgres::Error) {
        if let Some(db) = e.as_db_error() {
            let text = format!(
                "{} {} {} {:?} {:?} {:?}\n",
                db.severity(),
                db.code().code(),
                db.message(),
                db.detail(),
                db.hint(),
                db.where_()
            );
            self.obs.bytes.extend_from_slice(text.as_bytes());
            self.obs.errors.push(Err {
                severity: db.severity().to_owned(),
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            });
            if db.severity() == "FATAL" {
                self.obs.closed = true;
            }
        } else {
            self.obs
                .bytes
                .extend_from_slice(format!("client error: {e}\n").as_bytes());
            if e.is_closed() {
                self.obs.closed = true;
            }
        }
    }

    /// Extended protocol (Parse/Describe/Bind/Execute, binary results): every value's
    /// raw bytes go into the observation.
    pub(crate) fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        match client.query(sql, params) {
            Ok(rows) => {
                for row in row_values(&rows) {
                    for v in row {
                        match v {
                            Some(b) => self.obs.bytes.extend_from_slice(&b),
                            None => self.obs.bytes.extend_from_slice(b"(null)"),
                        }
                        self.obs.bytes.push(b'|');
                    }
                    self.obs.bytes.push(b'\n');
                }
                true
            }
            Err(e) => {
                self.record_error(&e);
                false
            }
        }
    }

    /// Simple protocol through the crate.
    pub(crate) fn simple(&mut self, sql: &str) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        match client.simple_query(sql) {
            Ok(msgs) => {
                for m in msgs {
                    if let postgres::SimpleQueryMessage::Row(r) = m {
                        for i in 0..r.len() {
                            let v = r.get(i).unwrap_or("(null)");
                            self.obs.bytes.extend_from_slice(v.as_bytes());
                            self.obs.bytes.push(b'|');
                        }
                        self.obs.bytes.push(b'\n');
                    }
                }
                true
            }
            Err(e) => {
                self.record_error(&e);
                false
            }
        }
    }
}

impl Run {
    pub(crate) fn start(name: &'static str, opts: Options) -> Run {
        let c = Cluster::start_with(opts);
        eprintln!(
            "cluster for {name}: tracked 127.0.0.1:{}, untracked {}",
            c.port(),
            c.sockdir().display()
        );
        Run {
            c,
            s: Suite::new(name),
        }
    }

    /// Admin SQL over the untracked socket (panics on error).
    pub(crate) fn admin(&self, sql: &str) -> String {
        self.c.psql_unix(sql)
    }

    /// A violation if audit_log is not exactly its baseline (then restores it).
    fn audit_check(&self) -> Option<String> {
        let now = self.admin("SELECT id, what FROM audit_log ORDER BY id");
        if now == "1|AUDIT-BASELINE\n" {
            return None;
        }
        self.admin("DELETE FROM audit_log; INSERT INTO audit_log VALUES (1, 'AUDIT-BASELINE');");
        Some(format!(
            "audit_log changed (committed): {:?}",
            now.trim_end()
        ))
    }

    pub(crate) fn psql_obs(
        &mut self,
        conninfo: &str,
        env: &[(&str, &str)],
        script: &str,
    ) -> (Obs, Psql) {
        let p = self.c.psql_raw(
            conninfo,
            &[
                "-X",
                "-A",
                "-t",
                "-P",
                "null=(null)",
                "-v",
                "VERBOSITY=verbose",
            ],
            env,
            script,
            PSQL_TIMEOUT,
        );
        let obs = Obs {
            bytes: p.raw.clone(),
            errors: psql_errors(&p.stderr),
            closed: psql_closed(&p),
            hung: p.code == Some(124) || p.code == Some(137),
            violations: Vec::new(),
            trail: format!(
                "stdout …{} stderr …{}",
                tail(&p.stdout, 200),
                tail(&p.stderr, 300)
            ),
        };
        (obs, p)
    }

    /// A psql attack over TCP (tracked) with the control over the UNIX socket.
    pub(crate) fn psql(&mut self, label: &str, script: &str, expect: Expect, ctl: Ctl) {
        self.psql_env(label, script, expect, ctl, &[]);
    }

    pub(crate) fn psql_env(
        &mut self,
        label: &str,
        script: &str,
        expect: Expect,
        ctl: Ctl,
        env: &[(&str, &str)],
    ) {
        // The control first: it runs on the state the attack finds (a rolled-back
        // control leaves nothing behind).
        self.psql_control(label, script, expect, ctl, env);
        let mut full = script.to_owned();
        if expect.wants_alive() {
            full.push_str(&format!("\n{ALIVE_SQL};\n"));
        }
        let conninfo = self.c.tcp_conninfo();
        let (mut obs, p) = self.psql_obs(&conninfo, env, &full);
        if expect.wants_alive() && !obs.hung && !p.stdout.contains(ALIVE) {
            obs.violations.push(format!(
                "the session was not usable after the attack (no answer to the following \
                 SELECT; psql exit {:?}; stderr tail «{}»)",
                p.code,
                tail(&p.stderr, 300)
            ));
        }
        if matches!(expect, Expect::Drop | Expect::RefuseOrDrop) {
            if let Some(v) = self.audit_check() {
                obs.violations.push(v);
            }
        }
        self.s.judge(label, expect, obs);
    }

    fn psql_control(
        &mut self,
        label: &str,
        script: &str,
        expect: Expect,
        ctl: Ctl,
        env: &[(&str, &str)],
    ) {
        let script = match ctl {
            Ctl::No => return,
            Ctl::Plain => script.to_owned(),
            Ctl::Tx => format!("BEGIN;\n{script}\nROLLBACK;\n"),
        };
        let conninfo = self.c.unix_conninfo();
        let (obs, _) = self.psql_obs(&conninfo, env, &script);
        self.s.control(label, &obs.bytes, &expect.forms());
    }

    /// The attack inside BEGIN … COMMIT: a refusal must fail the transaction (COMMIT
    /// answers ROLLBACK), a masked answer must leave it committable.
    pub(crate) fn psql_in_tx(&mut self, label: &str, script: &str, expect: Expect) {
        let full = format!("BEGIN;\n{script}\nCOMMIT;\n{ALIVE_SQL};\n");
        let conninfo = self.c.tcp_conninfo();
        let (mut obs, p) = self.psql_obs(&conninfo, &[], &full);
        let refused = obs
            .errors
            .iter()
            .any(|e| e.code == "42501" && e.severity == "ERROR");
        let failed = !obs.errors.is_empty();
        if refused && !p.stdout.contains("ROLLBACK") {
            obs.violations.push(format!(
                "refused inside BEGIN but COMMIT did not report ROLLBACK (stdout «{}»)",
                tail(&p.stdout, 200)
            ));
        }
        if !failed && !p.stdout.contains("COMMIT") {
            obs.violations.push(format!(
                "no error inside BEGIN but COMMIT did not report COMMIT (stdout «{}»)",
                tail(&p.stdout, 200)
            ));
        }
        if !p.stdout.contains(ALIVE) && !obs.hung {
            obs.violations.push(format!(
                "the session was not usable after COMMIT (stderr «{}»)",
                tail(&p.stderr, 300)
            ));
        }
        self.s.judge(&format!("{label} [in BEGIN]"), expect, obs);
    }

    /// A raw-client attack: `attack` runs against a target and returns its
    /// connection (and violations it found); the runner checks the session is still
    /// usable, judges, and runs the same attack against the UNIX socket as control.
    pub(crate) fn raw(
        &mut self,
        label: &str,
        expect: Expect,
        control: bool,
        attack: &dyn Fn(&Target) -> (Raw, Vec<String>),
    ) {
        if control {
            let (r, _) = attack(&self.c.unix_target());
            self.s.control(label, &r.received, &expect.forms());
        }
        let target = self.c.tcp_target();
        let (mut r, mut v) = attack(&target);
        if expect.wants_alive() {
            if r.eof || r.send_failed || r.timed_out {
                v.push(format!(
                    "the session was not usable after the attack (connection {}; client saw «{}»)",
                    if r.timed_out { "hung" } else { "closed" },
                    tail(&summaries(&r.msgs), 300)
                ));
            } else {
                let got = q(&mut r, ALIVE_SQL);
                if !has_data(&got, ALIVE) {
                    v.push(format!(
                        "the session was not usable after the attack: {ALIVE_SQL} got [{}]",
                        summaries(&got)
                    ));
                }
            }
        }
        if matches!(expect, Expect::Drop | Expect::RefuseOrDrop) {
            if let Some(a) = self.audit_check() {
                v.push(a);
            }
        }
        let obs = Obs::from_raw(&r, v);
        drop(r);
        self.s.judge(label, expect, obs);
    }

    /// A `postgres`-crate attack (extended protocol; binary results).
    pub(crate) fn ext(
        &mut self,
        label: &str,
        expect: Expect,
        attack: impl FnOnce(&mut Ext) + Send + 'static,
    ) {
        let notices = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = notices.clone();
        let mut cfg = self.c.client_config();
        cfg.notice_callback(move |n| {
            let text = format!(
                "NOTICE {} {} {:?} {:?}\n",
                n.code().code(),
                n.message(),
                n.detail(),
                n.where_()
            );
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(text.as_bytes());
        });
        let wants_alive = expect.wants_alive();
        let result = try_within(CRATE_TIMEOUT, move || {
            let mut ext = Ext {
                client: None,
                obs: Obs::default(),
            };
            match cfg.connect(postgres::NoTls) {
                Ok(c) => ext.client = Some(c),
                Err(e) => {
                    ext.record_error(&e);
                    return ext.obs;
                }
            }
            attack(&mut ext);
            if let Some(client) = ext.client.as_mut() {
                if wants_alive {
                    match client.query_one(ALIVE_SQL, &[]) {
                        Ok(row) if row.get::<_, String>(0) == ALIVE => {}
                        Ok(_) => ext.obs.violations.push("alive check: wrong answer".into()),
                        Err(e) => ext
                            .obs
                            .violations
                            .push(format!("the session was not usable after the attack: {e}")),
                    }
                } else if client.query_one("SELECT 1", &[]).is_err() || client.is_closed() {
                    ext.obs.closed = true;
                }
            }
            ext.obs
        });
        let mut obs = result.unwrap_or_else(|| Obs {
            hung: true,
            ..Obs::default()
        });
        obs.bytes
            .extend_from_slice(&notices.lock().unwrap_or_else(|p| p.into_inner()));
        if matches!(expect, Expect::Drop | Expect::RefuseOrDrop) {
            if let Some(a) = self.audit_check() {
                obs.violations.push(a);
            }
        }
        self.s.judge(label, expect, obs);
    }

    pub(crate) fn finish(self) {
        let Run { c, s } = self;
        c.stop();
        s.finish();
    }
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    s[i..].replace('\n', "⏎")
}

/// Logs in on `t`, sends `msgs` in one write, reads `syncs` ReadyForQuery.
fn raw_session(t: &Target, msgs: &[Vec<u8>], syncs: usize) -> Raw {
    let mut r = Raw::login(t, &wire::default_params());
    r.send_all(msgs);
    r.read_until(syncs);
    r
}

/// An attack made of one write of `msgs` after login, `syncs` answers read. Every
/// batch leaves no transaction open, so the last ReadyForQuery must say idle (`I`),
/// refused or not.
pub(crate) fn raw_batch(
    msgs: Vec<Vec<u8>>,
    syncs: usize,
) -> impl Fn(&Target) -> (Raw, Vec<String>) {
    move |t: &Target| {
        let r = raw_session(t, &msgs, syncs);
        let mut v = Vec::new();
        let last = r.msgs.iter().rev().find_map(Msg::ready);
        if !r.eof && !r.timed_out && last != Some(b'I') {
            v.push(format!(
                "ReadyForQuery after the batch is {:?}, expected I (idle)",
                last.map(char::from)
            ));
        }
        (r, v)
    }
}

/// The same batch inside BEGIN; checks the ReadyForQuery statuses stay truthful: a
/// refusal leaves the block failed (`E`, COMMIT → ROLLBACK), a masked answer leaves it
/// open (`T`, COMMIT → COMMIT).
pub(crate) fn raw_batch_in_tx(
    msgs: Vec<Vec<u8>>,
    syncs: usize,
) -> impl Fn(&Target) -> (Raw, Vec<String>) {
    move |t: &Target| {
        let mut v = Vec::new();
        let mut r = Raw::login(t, &wire::default_params());
        let begin = q(&mut r, "BEGIN");
        if begin.last().and_then(Msg::ready) != Some(b'T') {
            v.push(format!("BEGIN answered [{}]", summaries(&begin)));
        }
        r.send_all(&msgs);
        let got = r.read_until(syncs);
        let refused = got.iter().filter_map(Msg::error).any(|e| e.code == "42501");
        let errored = got.iter().any(|m| m.tag == b'E');
        let status = got.last().and_then(Msg::ready);
        let want = if errored { b'E' } else { b'T' };
        if status != Some(want) {
            v.push(format!(
                "inside BEGIN, ReadyForQuery after the attack is {:?}, expected {:?} \
                 (refused: {refused}); got [{}]",
                status.map(char::from),
                want as char,
                summaries(&got)
            ));
        }
        let commit = q(&mut r, "COMMIT");
        let tag = commit.iter().find_map(Msg::command_tag);
        let want_tag = if errored { "ROLLBACK" } else { "COMMIT" };
        if tag.as_deref() != Some(want_tag) {
            v.push(format!(
                "COMMIT after the attack answered {tag:?}, expected {want_tag}"
            ));
        }
        (r, v)
    }
}

/// The client's answers, one per ReadyForQuery (the first: the startup's).
fn segments(msgs: &[Msg]) -> Vec<Vec<Msg>> {
    let mut out = vec![Vec::new()];
    for m in msgs {
        out.last_mut().expect("one segment").push(m.clone());
        if m.tag == b'Z' {
            out.push(Vec::new());
        }
    }
    if out.last().is_some_and(Vec::is_empty) {
        out.pop();
    }
    out
}

/// Violations unless each answer carries only the errors its own statement may get
/// (`allowed[i]` for the i-th answer, the startup's first): the client must never see
/// an error for a statement it did not send, nor miss or gain an answer.
pub(crate) fn own_errors_only(msgs: &[Msg], allowed: &[&[&str]]) -> Vec<String> {
    let segs = segments(msgs);
    let mut v = Vec::new();
    let complete = segs
        .iter()
        .filter(|s| s.last().is_some_and(|m| m.tag == b'Z'))
        .count();
    if complete != allowed.len() {
        v.push(format!(
            "expected {} answers (ReadyForQuery), got {complete}: [{}]",
            allowed.len(),
            tail(&summaries(msgs), 400)
        ));
    }
    for (i, seg) in segs.iter().enumerate() {
        let ok: &[&str] = allowed.get(i).copied().unwrap_or(&[]);
        for e in seg.iter().filter_map(Msg::error) {
            if !ok.contains(&e.code.as_str()) {
                let whose = if i == 0 {
                    "the startup (no statement of the client's)".to_owned()
                } else {
                    format!("answer {i}")
                };
                v.push(format!(
                    "error {} {:?} in {whose}, which its own statement cannot cause",
                    e.code, e.message
                ));
            }
        }
    }
    v
}

pub(crate) fn attack_options(extra: &str) -> Options {
    Options::new(&format!("{SCHEMA}\n{extra}")).prefix("supervise-pgattacks-")
}
