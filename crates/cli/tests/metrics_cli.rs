//! `--metrics ADDR` (docs/METRICS.md): a real validator and miner serve Prometheus metrics; the
//! test scrapes them over plain HTTP, parses the answers strictly as the Prometheus text format
//! (0.0.4) and checks what they say: the documented families with their types, the chain
//! height, a miner's losses and uploaded bytes, a validator's per-peer scores and weights. A
//! path other than /metrics is a 404; a bad ADDR, or one in use, is an error naming the flag.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// One sample: its labels and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One metric family: its type and samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

type Exposition = BTreeMap<String, Family>;

fn is_name(s: &str, colon: bool) -> bool {
    let mut c = s.chars();
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    c.next().is_some_and(|f| ok(f, true)) && c.all(|x| ok(x, false))
}

/// A sample's family name, given the family types declared so far.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(
            types.get(base).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then_some(base)
    })
}

/// `{a="x",b="y"}` (without the braces) into labels; escapes `\\`, `\"` and `\n`.
fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or(format!("no =\" in {s:?}"))?;
        if !is_name(key, false) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {s:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {s:?}")),
            }
        };
        if out.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice in {s:?}"));
        }
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (name, labels, rest) = match line.find('{') {
        Some(i) => {
            let close = line
                .rfind('}')
                .ok_or(format!("no closing brace: {line:?}"))?;
            (
                &line[..i],
                parse_labels(&line[i + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let n = line.split(' ').next().unwrap_or(line);
            (n, BTreeMap::new(), &line[n.len()..])
        }
    };
    if !is_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let fields: Vec<&str> = rest
        .strip_prefix(' ')
        .ok_or(format!("no space before the value: {line:?}"))?
        .split(' ')
        .collect();
    let value = match fields.as_slice() {
        [v] => parse_value(v)?,
        [v, ts] => {
            ts.parse::<i64>()
                .map_err(|_| format!("bad timestamp {ts:?}"))?;
            parse_value(v)?
        }
        _ => return Err(format!("bad value part: {line:?}")),
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses the Prometheus text format 0.0.4 strictly: every line a `# HELP`, a `# TYPE` (once
/// per family, before its samples, of a known type) or a sample of a declared family; a
/// family's samples together; no series twice; counters not negative; a final newline.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Exposition::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series: BTreeSet<String> = BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix('#') {
            let mut w = c.trim_start().splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_name(name, true) {
                        return Err(format!("bad name in {line:?}"));
                    }
                    let known = ["counter", "gauge", "histogram", "summary", "untyped"];
                    if !known.contains(&kind) {
                        return Err(format!("unknown type in {line:?}"));
                    }
                    if types.insert(name.into(), kind.into()).is_some() || out.contains_key(name) {
                        return Err(format!("TYPE after samples or twice: {line:?}"));
                    }
                }
                (Some("HELP"), Some(name), _) if is_name(name, true) => {}
                (Some("HELP"), ..) => return Err(format!("bad HELP line {line:?}")),
                _ => {} // a comment
            }
            continue;
        }
        let s = parse_sample(line)?;
        let fam = family_of(&s.name, &types)
            .ok_or(format!("sample of an undeclared family: {line:?}"))?
            .to_string();
        if current.as_deref() != Some(fam.as_str()) {
            if !done.insert(fam.clone()) {
                return Err(format!("{fam}'s samples are not together"));
            }
            current = Some(fam.clone());
        }
        if !series.insert(format!("{}{:?}", s.name, s.labels)) {
            return Err(format!("series twice: {line:?}"));
        }
        if types[&fam] == "counter" && s.value < 0.0 {
            return Err(format!("negative counter: {line:?}"));
        }
        let f = out.entry(fam.clone()).or_default();
        f.kind = types[&fam].clone();
        f.samples.push(s);
    }
    Ok(out)
}

/// Status line, headers and body of `GET path` (with an `Accept` header if given).
fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let len = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length");
    assert_eq!(len.parse::<usize>().unwrap(), body.len(), "{head}");
    (status.to_string(), headers.to_string(), body.to_string())
}

/// A node's metrics, parsed (panics with the text if it does not parse).
fn scrape(addr: SocketAddr) -> Exposition {
    let (status, headers, body) = http_get(addr, "/metrics", None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

fn metrics_addr(node_dir: &Path, deadline: Instant, net: &Net) -> SocketAddr {
    let f = node_dir.join("metrics.addr");
    loop {
        if let Ok(s) = std::fs::read_to_string(&f) {
            if let Ok(a) = s.trim().parse() {
                return a;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {}\n{}",
            f.display(),
            net.all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The family `name` of type `kind`, with its samples.
fn family<'a>(e: &'a Exposition, name: &str, kind: &str) -> &'a [Sample] {
    let f = e
        .get(name)
        .unwrap_or_else(|| panic!("no {name}; families: {:?}", e.keys()));
    assert_eq!(f.kind, kind, "{name}'s type");
    &f.samples
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(e: &Exposition, name: &str, kind: &str, labels: &[(&str, &str)]) -> f64 {
    let s: Vec<&Sample> = family(e, name, kind)
        .iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .collect();
    assert_eq!(s.len(), 1, "{name}{labels:?}: {s:?}");
    s[0].value
}

fn label_values(e: &Exposition, name: &str, kind: &str, label: &str) -> BTreeSet<String> {
    family(e, name, kind)
        .iter()
        .filter_map(|s| s.labels.get(label).cloned())
        .collect()
}

#[test]
fn nodes_serve_prometheus_metrics_that_parse_and_say_what_happened() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("net");
    let mut net = Net::init_with(
        &run,
        &NetConfig {
            window_secs: 6,
            start_in: 8,
            validators: 1,
            checkpoint_every: 3,
        },
    );
    let metrics = ["--metrics", "127.0.0.1:0"];
    net.start("validator", "validator-1", 8, &metrics);
    net.start("miner", "miner-1", 8, &metrics);
    let deadline = Instant::now() + Duration::from_secs(90);
    let v_addr = metrics_addr(&run.join("nodes/validator-1"), deadline, &net);
    let m_addr = metrics_addr(&run.join("nodes/miner-1"), deadline, &net);

    // Another node asking for an address in use says which flag it was.
    let out = std::process::Command::new(bin())
        .env("COVENANT_CACHE", cache())
        .args(["miner", "--run"])
        .arg(&run)
        .args(["--name", "miner-x", "--metrics", &v_addr.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("--metrics {v_addr}")) && err.contains("binding"),
        "{err}"
    );

    // Wait until a window's metrics exist: a miner's trained and stepped window, a validator's
    // report.
    let (v, m) = loop {
        let (v, m) = (scrape(v_addr), scrape(m_addr));
        // Phase times and downloads are counted at outer steps: the first trained window's
        // (window 1) is the one after the loss appears.
        let trained = m.contains_key("covenant_inner_loss")
            && value(&m, "covenant_window", "gauge", &[]) >= 1.0;
        let reported = v.contains_key("covenant_peer_score");
        if trained && reported {
            break (v, m);
        }
        assert!(
            Instant::now() < deadline,
            "no window's metrics yet (trained {trained}, reported {reported})\n{}",
            net.all_logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    for (e, role) in [(&v, "validator"), (&m, "miner")] {
        let info = family(e, "covenant_node_info", "gauge");
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].labels["role"], role);
        assert!(value(e, "covenant_chain_height", "gauge", &[]) > 0.0);
        assert!(value(e, "covenant_window", "gauge", &[]) >= 0.0);
        for p in ["inner", "outer", "wait", "eval"] {
            value(
                e,
                "covenant_phase_seconds_total",
                "counter",
                &[("phase", p)],
            );
            value(e, "covenant_window_phase_seconds", "gauge", &[("phase", p)]);
        }
        let reasons = label_values(e, "covenant_gather_rejected_total", "counter", "reason");
        assert_eq!(reasons.len(), 7, "{reasons:?}");
        assert!(reasons.contains("invalid") && reasons.contains("out_of_time"));
        for (name, kind) in [
            ("covenant_download_bytes_total", "counter"),
            ("covenant_window_download_bytes", "gauge"),
            ("covenant_window_peers_aggregated", "gauge"),
            ("covenant_window_peers_gathered", "gauge"),
            ("covenant_window_peers_rejected", "gauge"),
            ("covenant_outer_steps_total", "counter"),
            ("covenant_errors_total", "counter"),
        ] {
            family(e, name, kind);
        }
    }

    assert!(net
        .log("miner-1")
        .contains(&format!("metrics at http://{m_addr}/metrics")));

    // The miner: a finite, positive loss, bytes uploaded, its compute utilisation.
    let loss = value(&m, "covenant_inner_loss", "gauge", &[("stat", "mean")]);
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    assert!(value(&m, "covenant_inner_steps_total", "counter", &[]) > 0.0);
    assert!(value(&m, "covenant_upload_bytes_total", "counter", &[]) > 0.0);
    assert!(value(&m, "covenant_window_upload_bytes", "gauge", &[]) > 0.0);
    assert!(
        value(
            &m,
            "covenant_phase_seconds_total",
            "counter",
            &[("phase", "inner")]
        ) > 0.0
    );
    let u = value(&m, "covenant_utilisation_ratio", "gauge", &[]);
    assert!((0.0..=1.0).contains(&u), "utilisation {u}");

    // The validator: a score and a weight for the miner, and its validation loss.
    let uid = value(&m, "covenant_uid", "gauge", &[]).to_string();
    let scored = label_values(&v, "covenant_peer_score", "gauge", "uid");
    assert!(scored.contains(&uid), "the miner (uid {uid}) in {scored:?}");
    let score = value(&v, "covenant_peer_score", "gauge", &[("uid", &uid)]);
    assert!(score.is_finite(), "{score}");
    let weight = value(&v, "covenant_peer_weight", "gauge", &[("uid", &uid)]);
    assert!((0.0..=1.0).contains(&weight), "{weight}");
    let val = value(&v, "covenant_val_loss", "gauge", &[]);
    assert!(val.is_finite() && val > 0.0, "{val}");
    assert!(!v.contains_key("covenant_utilisation_ratio"), "miners only");

    // Anything but /metrics is not found; OpenMetrics for those who ask.
    let (status, _, _) = http_get(m_addr, "/nope", None);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (_, headers, body) = http_get(
        v_addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert!(
        headers.contains("application/openmetrics-text") && body.ends_with("# EOF\n"),
        "{headers}"
    );
    eprintln!("metrics test took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
fn a_bad_metrics_address_is_an_error_naming_the_flag() {
    let out = std::process::Command::new(bin())
        .args(["miner", "--run", "/nonexistent", "--name", "m"])
        .args(["--metrics", "localhost-ish"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--metrics") && err.contains("localhost-ish"),
        "{err}"
    );
}

#[test]
fn the_parser_refuses_what_is_not_the_text_format() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 2\n\
              # TYPE b gauge\nb NaN\nb{z=\"\"} -1.5 1700000000\n";
    let e = parse_exposition(ok).unwrap();
    assert_eq!(e["a_total"].samples[0].labels["y"], "q\"");
    assert_eq!(e["b"].samples.len(), 2);
    for bad in [
        "a 1",                                                      // no final newline
        "a 1\n",                                                    // undeclared
        "# TYPE a gauge\na\n",                                      // no value
        "# TYPE a gauge\na x\n",                                    // not a number
        "# TYPE a gauge\na{b=1} 1\n",                               // unquoted label
        "# TYPE a gauge\na 1\na 2\n",                               // a series twice
        "# TYPE a counter\na -1\n",                                 // a negative counter
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",                    // TYPE twice
        "# TYPE a thing\na 1\n",                                    // unknown type
        "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{c=\"d\"} 1\n", // apart
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad:?}");
    }
}
