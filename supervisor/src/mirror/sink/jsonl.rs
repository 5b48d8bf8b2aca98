//! JSON lines: one object per record, the captured bytes in base64. Also the payload
//! the NATS station publishes, so a console reads one format from either.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use base64::Engine;

use super::super::record::{Record, What};
use super::station::Station;

/// Appends `record` to `out` as one JSON object and a newline.
///
/// `{"time_ns","tenant","stream","conn","serial","client","server","event"}` and, for
/// a message, `"origin","kind","original_len","offset","captured_len","reason","data"`
/// (base64 of the captured bytes).
pub fn encode_line(record: &Record, out: &mut Vec<u8>) {
    let mut object = serde_json::json!({
        "time_ns": record.time_ns,
        "tenant": &*record.tenant,
        "stream": &*record.stream,
        "conn": &*record.conn,
        "serial": record.serial,
        "client": record.client.to_string(),
        "server": record.server.to_string(),
    });
    let map = object.as_object_mut().expect("an object");
    match &record.what {
        What::Opened => {
            map.insert("event".into(), "opened".into());
        }
        What::Closed => {
            map.insert("event".into(), "closed".into());
        }
        What::Message {
            kind,
            origin,
            original_len,
            offset,
            reason,
        } => {
            map.insert("event".into(), "message".into());
            map.insert("origin".into(), origin.as_str().into());
            map.insert("kind".into(), (*kind).into());
            map.insert("original_len".into(), (*original_len).into());
            map.insert("offset".into(), (*offset).into());
            map.insert("captured_len".into(), record.data.len().into());
            map.insert("reason".into(), (&**reason).into());
            map.insert(
                "data".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(&record.data)
                    .into(),
            );
        }
    }
    serde_json::to_writer(&mut *out, &object).expect("writing JSON to a Vec cannot fail");
    out.push(b'\n');
}

/// A JSON-lines file (appended to; created 0600).
#[derive(Debug)]
pub struct JsonlFile {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    line: Vec<u8>,
}

impl JsonlFile {
    /// A station writing to `path`.
    pub fn new(path: PathBuf) -> JsonlFile {
        JsonlFile {
            path,
            file: None,
            line: Vec::new(),
        }
    }
}

impl Station for JsonlFile {
    fn kind(&self) -> &'static str {
        "jsonl"
    }

    fn connect(&mut self) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        self.file = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not open"))?;
        self.line.clear();
        encode_line(record, &mut self.line);
        file.write_all(&self.line)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "jsonl", "path": self.path })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "open": self.file.is_some(), "path": self.path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::record::Origin;
    use std::sync::Arc;

    #[test]
    fn a_message_line_has_its_lengths_and_base64_data() {
        let record = Record {
            time_ns: 5,
            tenant: Arc::from("t"),
            stream: Arc::from("s"),
            conn: Arc::from("t/s/c1"),
            serial: 1,
            client: "127.0.0.1:40000".parse().unwrap(),
            server: "127.0.0.1:5432".parse().unwrap(),
            what: What::Message {
                kind: "DataRow",
                origin: Origin::Server,
                original_len: 40,
                offset: 0,
                reason: Arc::from("policy 0"),
            },
            data: b"D\0\0\0\x27".to_vec(),
        };
        let mut out = Vec::new();
        encode_line(&record, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["kind"], "DataRow");
        assert_eq!(v["origin"], "server");
        assert_eq!(v["original_len"], 40);
        assert_eq!(v["captured_len"], 5);
        assert_eq!(v["data"], "RAAAACc=");
        assert_eq!(v["conn"], "t/s/c1");
    }
}
