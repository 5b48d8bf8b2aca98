//! The OpenMetrics checks of `diagnostics.rs`: an exposition parsed by
//! prometheus_client's strict parser (the Debian package python3-prometheus-client,
//! run by the system Python), and curl for the HTTP endpoint.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::PYTHON;

/// Panics, naming the package, unless the system Python can import prometheus_client.
pub fn require_prometheus_client() {
    let out = Command::new(PYTHON)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON} is missing ({e}): install python3"));
    assert!(
        out.status.success(),
        "{PYTHON} cannot import prometheus_client: install the Debian package \
         python3-prometheus-client (.ci/run does)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Panics unless curl runs.
pub fn require_curl() {
    let ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "curl is missing: install the Debian package curl (.ci/run does)"
    );
}

/// An OpenMetrics exposition, parsed by prometheus_client's strict OpenMetrics parser
/// (which rejects what is not valid OpenMetrics, a missing `# EOF` included).
#[derive(Debug)]
pub struct Metrics {
    /// family name → type ("counter", "histogram", …).
    pub families: std::collections::BTreeMap<String, String>,
    /// (sample name, labels, value).
    pub samples: Vec<(String, std::collections::BTreeMap<String, String>, f64)>,
}

impl Metrics {
    /// The value of sample `name` whose labels include every pair of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    /// Sample names present for family `family`'s histogram parts.
    pub fn has_sample(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }
}

const PARSE_METRICS: &str = r#"
import json, math, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
fams = list(parse(sys.stdin.read()))
def num(v):
    v = float(v)
    return v if math.isfinite(v) else str(v)
print(json.dumps({
    "families": {f.name: f.type for f in fams},
    "samples": [[s.name, s.labels, num(s.value)] for f in fams for s in f.samples],
}))
"#;

/// Parses `text` with prometheus_client; panics with the parser's complaint.
pub fn parse_openmetrics(text: &str) -> Metrics {
    require_prometheus_client();
    let mut child = Command::new(PYTHON)
        .args(["-c", PARSE_METRICS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut stdin = child.stdin.take().expect("python stdin");
    let data = text.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait python3");
    let _ = writer.join();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition:\n{}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("parser output is JSON");
    let families = v["families"]
        .as_object()
        .expect("families")
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap_or("").to_owned()))
        .collect();
    let samples = v["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            let value = s[2].as_f64().unwrap_or(f64::INFINITY);
            (s[0].as_str().unwrap_or("").to_owned(), labels, value)
        })
        .collect();
    Metrics { families, samples }
}
