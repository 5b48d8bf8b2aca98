//! A pcapng file station: `<dir>/<prefix>-<n>.pcapng`, rotated by size, for Wireshark
//! or tshark to open directly. Each file is a complete capture (its own SHB and IDB);
//! sequence numbers continue across files, so `mergecap` of consecutive files reads
//! as one conversation.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::super::pcapng::PcapngWriter;
use super::super::record::Record;
use super::station::Station;

/// Names tried past an existing file before giving up (another writer with the same
/// prefix racing us, not a normal state).
const MAX_NAME_TRIES: u64 = 1_000;

/// Writes pcapng files, rotating to the next one past `rotate_bytes`.
#[derive(Debug)]
pub struct PcapngFile {
    dir: PathBuf,
    prefix: String,
    rotate_bytes: u64,
    /// Kept across files and reopenings: it holds the conversations' sequence numbers.
    writer: Option<PcapngWriter<BufWriter<File>>>,
    /// The file being written; `None` until opened and after a failure.
    current: Option<PathBuf>,
    /// The next `n` to try; `None` until the directory has been scanned.
    next_index: Option<u64>,
    /// The current file's length when it held only its section header.
    header_bytes: u64,
    files_written: u64,
}

impl PcapngFile {
    /// A station writing `<dir>/<prefix>-<n>.pcapng`, a new file once the current one
    /// holds `rotate_bytes` or more (0: never rotate). Nothing is opened yet.
    pub fn new(dir: PathBuf, prefix: String, rotate_bytes: u64) -> PcapngFile {
        PcapngFile {
            dir,
            prefix,
            rotate_bytes,
            writer: None,
            current: None,
            next_index: None,
            header_bytes: 0,
            files_written: 0,
        }
    }

    /// Starts the next file: created 0600 and never over an existing one, so a
    /// restarted supervisor continues after the files already there (its directory is
    /// created 0700 if missing).
    fn open_next(&mut self) -> io::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let mut n = match self.next_index {
            Some(n) => n,
            None => highest_index(&self.dir, &self.prefix)? + 1,
        };
        let mut tries = 0;
        let (path, file) = loop {
            let path = self.dir.join(format!("{}-{n}.pcapng", self.prefix));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < MAX_NAME_TRIES => {
                    n += 1;
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        self.next_index = Some(n + 1);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let comment = format!("supervise mirror {name}");
        let out = BufWriter::with_capacity(64 * 1024, file);
        match self.writer.as_mut() {
            // The old file was flushed or has failed: what it still buffers is dropped
            // rather than retried.
            Some(writer) => drop(writer.restart(out, &comment)?.into_parts()),
            None => self.writer = Some(PcapngWriter::new(out, &comment)?),
        }
        self.current = Some(path);
        self.header_bytes = self.writer.as_ref().map_or(0, |w| w.bytes_written());
        self.files_written += 1;
        Ok(())
    }

    fn writer(&mut self) -> io::Result<&mut PcapngWriter<BufWriter<File>>> {
        match (self.current.is_some(), self.writer.as_mut()) {
            (true, Some(writer)) => Ok(writer),
            _ => Err(io::Error::new(io::ErrorKind::NotConnected, "no file open")),
        }
    }

    /// Records an error: the file is given up and `connect` starts the next one, as a
    /// file may end in a partly written block.
    fn failed<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.current = None;
        }
        result
    }
}

/// The highest `n` of `<prefix>-<n>.pcapng` in `dir`, 0 if none.
fn highest_index(dir: &Path, prefix: &str) -> io::Result<u64> {
    let mut highest = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let n = name
            .to_str()
            .and_then(|name| name.strip_prefix(prefix)?.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(".pcapng")?.parse::<u64>().ok());
        highest = highest.max(n.unwrap_or(0));
    }
    Ok(highest)
}

impl Station for PcapngFile {
    fn kind(&self) -> &'static str {
        "pcapng"
    }

    fn connect(&mut self) -> io::Result<()> {
        self.current = None;
        self.open_next()
    }

    fn write(&mut self, record: &Record) -> io::Result<()> {
        let (rotate_bytes, header_bytes) = (self.rotate_bytes, self.header_bytes);
        let writer = self.writer()?;
        // Rotate before writing, so an error opening the next file drops this record
        // (counted) rather than losing it after counting it written; never a file
        // with no record in it.
        let bytes = writer.bytes_written();
        if rotate_bytes > 0 && bytes >= rotate_bytes && bytes > header_bytes {
            let flushed = writer.get_mut().flush();
            self.failed(flushed)?;
            let opened = self.open_next();
            self.failed(opened)?;
        }
        let written = self.writer()?.record(record);
        self.failed(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.writer() {
            Ok(writer) => {
                let flushed = writer.get_mut().flush();
                self.failed(flushed)
            }
            Err(_) => Ok(()),
        }
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "pcapng",
            "dir": self.dir,
            "prefix": self.prefix,
            "rotate_bytes": self.rotate_bytes,
        })
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "open": self.current.is_some(),
            "file": self.current,
            "bytes": self.writer.as_ref().map_or(0, |w| w.bytes_written()),
            "files_written": self.files_written,
        })
    }
}

#[cfg(test)]
#[path = "pcapng_file_tests.rs"]
mod tests;
