//! The runners: one cluster per #[test] ([`Run`]) and the three kinds of client an
//! attack runs with (psql, the `postgres` crate, the raw wire client), each with its
//! control over the untracked UNIX socket, and the raw-protocol helpers the attacks
//! share.

use crate::contract::*;
use crate::pgcluster::wire::{self, Msg, Raw, Target};
use crate::pgcluster::*;

pub(crate) struct Run {
    pub(crate) c: Cluster,
    pub(crate) s: Suite,
}

fn psql_errors(stderr: &str) -> Vec<Err> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        for sev in ["ERROR", "FATAL"] {
            let pat = format!("{sev}:  ");
            if let Some(i) = line.find(&pat) {
                let rest = &line[i + pat.len()..];
                let b = rest.as_bytes();
                let (code, message) = if b.len() >= 7 && b[5] == b':' {
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

/// The first column of every DataRow, as text.
pub(crate) fn first_column(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter_map(Msg::data_row)
        .filter_map(|row| row.into_iter().next().flatten())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

pub(crate) fn refused(msgs: &[Msg]) -> bool {
    msgs.iter()
        .filter_map(Msg::error)
        .any(|e| e.code == "42501")
}

pub(crate) fn options_params(options: &str) -> Vec<(&str, &str)> {
    let mut p = wire::default_params();
    p.push(("options", options));
    p
}

impl Run {
    pub(crate) fn start(name: &'static str) -> Run {
        let c = Cluster::start_with(Options::new(SCHEMA).prefix("supervise-pgmore-"));
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

    pub(crate) fn admin(&self, sql: &str) -> String {
        self.c.psql_unix(sql)
    }

    fn psql_run(&self, conninfo: &str, env: &[(&str, &str)], script: &str) -> Psql {
        self.c.psql_raw(
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
        )
    }

    /// psql over TCP (tracked), with the control over the UNIX socket.
    pub(crate) fn psql(&mut self, label: &str, script: &str, expect: Expect, control: bool) {
        self.psql_env(label, script, expect, control, &[]);
    }

    pub(crate) fn psql_env(
        &mut self,
        label: &str,
        script: &str,
        expect: Expect,
        control: bool,
        env: &[(&str, &str)],
    ) {
        if control {
            let p = self.psql_run(&self.c.unix_conninfo(), env, script);
            self.s.control(label, &p.raw, expect == Expect::Rewrite);
        }
        let full = format!("{script}\n{ALIVE_SQL};\n");
        let p = self.psql_run(&self.c.tcp_conninfo(), env, &full);
        let hung = p.code == Some(124) || p.code == Some(137);
        let mut violations = Vec::new();
        if !hung && !p.stdout.contains(ALIVE) {
            violations.push(format!(
                "session not usable afterwards (exit {:?}, stderr «{}»)",
                p.code,
                tail(&p.stderr, 300)
            ));
        }
        let obs = Obs {
            bytes: p.raw.clone(),
            errors: psql_errors(&p.stderr),
            hung,
            violations,
            trail: format!(
                "stdout …{} stderr …{}",
                tail(&p.stdout, 300),
                tail(&p.stderr, 300)
            ),
        };
        self.s.judge(label, expect, obs);
    }

    /// A raw-client attack against the tracked port, with the control on the socket.
    pub(crate) fn raw(
        &mut self,
        label: &str,
        expect: Expect,
        control: bool,
        attack: &dyn Fn(&Target) -> (Raw, Vec<String>),
    ) {
        if control {
            let (r, _) = attack(&self.c.unix_target());
            self.s
                .control(label, &r.received, expect == Expect::Rewrite);
        }
        let (mut r, mut v) = attack(&self.c.tcp_target());
        if r.eof || r.send_failed || r.timed_out {
            v.push(format!(
                "session not usable afterwards ({}; client saw «{}»)",
                if r.timed_out { "hung" } else { "closed" },
                tail(&summaries(&r.msgs), 300)
            ));
        } else {
            let got = q(&mut r, ALIVE_SQL);
            if !has_data(&got, ALIVE) {
                v.push(format!(
                    "session not truthful afterwards: {ALIVE_SQL} got [{}]",
                    summaries(&got)
                ));
            }
        }
        let obs = Obs::from_raw(&r, v);
        self.s.judge(label, expect, obs);
    }

    /// A `postgres`-crate attack (extended protocol, binary results), with control.
    pub(crate) fn ext(&mut self, label: &str, expect: Expect, sql: &'static str) {
        for unix in [true, false] {
            let cfg = if unix {
                self.c.client_config_unix()
            } else {
                self.c.client_config()
            };
            let got = try_within(CRATE_TIMEOUT, move || {
                let mut obs = Obs::default();
                let mut client = match cfg.connect(postgres::NoTls) {
                    Ok(c) => c,
                    Err(e) => {
                        obs.violations.push(format!("connect: {e}"));
                        return obs;
                    }
                };
                match client.query(sql, &[]) {
                    Ok(rows) => {
                        for row in row_values(&rows) {
                            for v in row.into_iter().flatten() {
                                obs.bytes.extend_from_slice(&v);
                                obs.bytes.push(b'|');
                            }
                        }
                        obs.trail = format!("{} rows", rows.len());
                    }
                    Err(e) => {
                        if let Some(db) = e.as_db_error() {
                            obs.bytes.extend_from_slice(
                                format!("{} {} {:?}", db.code().code(), db.message(), db.detail())
                                    .as_bytes(),
                            );
                            obs.errors.push(Err {
                                severity: db.severity().to_owned(),
                                code: db.code().code().to_owned(),
                                message: db.message().to_owned(),
                            });
                        }
                        obs.trail = format!("error {e}");
                    }
                }
                match client.query_one(ALIVE_SQL, &[]) {
                    Ok(row) if row.get::<_, String>(0) == ALIVE => {}
                    other => obs
                        .violations
                        .push(format!("session not usable afterwards: {other:?}")),
                }
                obs
            })
            .unwrap_or_else(|| Obs {
                hung: true,
                ..Obs::default()
            });
            if unix {
                self.s.control(label, &got.bytes, expect == Expect::Rewrite);
            } else {
                self.s.judge(label, expect, got);
            }
        }
    }

    pub(crate) fn finish(self) {
        let Run { c, s } = self;
        c.stop();
        s.finish();
    }
}

/// Logs in, sends `msgs` in one write, reads `syncs` ReadyForQuery.
pub(crate) fn raw_batch(
    msgs: Vec<Vec<u8>>,
    syncs: usize,
) -> impl Fn(&Target) -> (Raw, Vec<String>) {
    move |t: &Target| {
        let mut r = Raw::login(t, &wire::default_params());
        r.send_all(&msgs);
        r.read_until(syncs);
        (r, Vec::new())
    }
}
