//! Starting a tenant's mirror from its profile: each `[[mirror.sink]]` becomes a
//! [`Sink`] with its stations' threads. A station that cannot be reached now is not
//! an error (it is retried, and its records are dropped and counted meanwhile); a
//! directory that cannot be made is.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::sink::jsonl::JsonlFile;
use super::sink::nats::{NatsAuth, NatsConfig, NatsStation};
use super::sink::pcapng_file::PcapngFile;
use super::sink::station::Station;
use super::sink::tcp::TcpStation;
use super::sink::Sink;
use super::{Mirror, Shared};
use crate::diag::Dpid;
use crate::profile::mirror::{NatsCredentials, SinkConfig, SinkKind};
use crate::profile::Profile;

/// This host's name, for NATS subjects.
fn node_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// `path` under `state_dir` unless it is absolute; its directory is made (0700).
fn under(state_dir: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let full = if path.is_absolute() {
        path.to_owned()
    } else {
        state_dir.join(path)
    };
    if let Some(dir) = full.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    Ok(full)
}

fn stations(config: &SinkConfig, state_dir: &Path) -> Result<Vec<Box<dyn Station>>, String> {
    let failed =
        |path: &Path, e: std::io::Error| format!("sink {:?}: {}: {e}", config.name, path.display());
    Ok(match &config.kind {
        SinkKind::Pcapng { path, rotate_bytes } => {
            let full = under(state_dir, path).map_err(|e| failed(path, e))?;
            let dir = full.parent().map(Path::to_owned).unwrap_or_default();
            let prefix = full
                .file_name()
                .map_or_else(|| config.name.clone(), |f| f.to_string_lossy().into_owned());
            vec![Box::new(PcapngFile::new(dir, prefix, *rotate_bytes))]
        }
        SinkKind::Jsonl { path } => {
            let full = under(state_dir, path).map_err(|e| failed(path, e))?;
            vec![Box::new(JsonlFile::new(full))]
        }
        SinkKind::Tcp { addresses } => addresses
            .iter()
            .map(|a| Box::new(TcpStation::new(*a)) as Box<dyn Station>)
            .collect(),
        SinkKind::Nats {
            url,
            jetstream,
            subject_prefix,
            node,
            auth,
            ..
        } => {
            let node = node.clone().unwrap_or_else(node_name);
            let mut nats = NatsConfig::new(url, jetstream, subject_prefix, &node);
            let var = |name: &str| {
                std::env::var(name).map_err(|_| {
                    format!("sink {:?}: the environment variable {name} (its NATS credential) is not set", config.name)
                })
            };
            nats.auth = match auth {
                NatsCredentials::None => NatsAuth::None,
                NatsCredentials::UserPassword { user, password_env } => NatsAuth::UserPassword {
                    user: user.clone(),
                    password: var(password_env)?,
                },
                NatsCredentials::Token { token_env } => NatsAuth::Token(var(token_env)?),
            };
            let station =
                NatsStation::new(nats).map_err(|e| format!("sink {:?}: {e}", config.name))?;
            vec![Box::new(station)]
        }
    })
}

/// The mirror of `profile`, its sinks started; `None` when it has no `[mirror]`.
pub fn start(profile: &Profile, state_dir: &Path) -> Result<Option<Shared>, String> {
    let Some(config) = profile.mirror.clone() else {
        return Ok(None);
    };
    let mut sinks = Vec::new();
    for s in &config.sinks {
        let stations = stations(s, state_dir)?;
        let dpid = Dpid::sink(&profile.tenant, &s.name);
        let sink = Sink::start(dpid, s.name.clone(), stations, s.queue);
        if matches!(
            s.kind,
            SinkKind::Nats {
                diagnostics: true,
                ..
            }
        ) {
            // The supervisor's log lines go to the fleet too (the first such sink).
            if let Some(diag) = crate::diag::get() {
                diag.log.set_tee(Box::new(sink.line_tap()));
            }
        }
        sinks.push(sink);
    }
    Ok(Some(Shared(Arc::new(Mutex::new(Mirror::new(
        profile, config, sinks,
    ))))))
}
