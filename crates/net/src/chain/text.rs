//! Text forms used by the command line: durations, `KEY:STAKE` validator specs, weight lists,
//! and the metagraph table printed by `covenant chain status`.

use std::fmt::Write as _;
use std::path::Path;

use super::{Balance, ChainError, Metagraph, ValidatorStake};
use crate::identity::{Keypair, PublicKey};

/// Parses `1s`, `500ms`, `2m`, `1h` or a bare number of seconds into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (e.g. 1s, 500ms, 2m)"))?;
    let ms = v * mult as f64;
    if !ms.is_finite() || !(1.0..=1e15).contains(&ms) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(ms.round() as u64)
}

/// A public key given as 64 hex digits, or as the path of a key file (its public half is used).
pub fn parse_public_key(s: &str) -> Result<PublicKey, String> {
    if let Ok(k) = PublicKey::from_hex(s) {
        return Ok(k);
    }
    let p = Path::new(s);
    if p.exists() {
        return Keypair::load(p)
            .map(|k| k.public())
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "{s:?} is neither a 64-hex-digit public key nor a key file"
    ))
}

/// Parses `KEY:STAKE` (KEY as in [`parse_public_key`]).
pub fn parse_validator(s: &str) -> Result<ValidatorStake, ChainError> {
    let (key, stake) = parse_key_amount(s, "validator", "STAKE")?;
    Ok(ValidatorStake { key, stake })
}

/// Parses `KEY:AMOUNT`, a genesis balance (KEY as in [`parse_public_key`]).
pub fn parse_balance(s: &str) -> Result<Balance, ChainError> {
    let (key, amount) = parse_key_amount(s, "balance", "AMOUNT")?;
    Ok(Balance { key, amount })
}

fn parse_key_amount(s: &str, what: &str, unit: &str) -> Result<(PublicKey, u64), ChainError> {
    let bad = |m: String| ChainError::Genesis(format!("{what} {s:?}: {m}"));
    let (key, n) = s
        .rsplit_once(':')
        .ok_or_else(|| bad(format!("expected KEY:{unit}")))?;
    let key = parse_public_key(key).map_err(bad)?;
    let n: u64 = n.trim().parse().map_err(|_| {
        bad(format!(
            "{} {n:?} is not a whole number",
            unit.to_lowercase()
        ))
    })?;
    Ok((key, n))
}

/// Parses `uid:weight,uid:weight,...`.
pub fn parse_weights(s: &str) -> Result<Vec<(u32, u16)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (u, w) = p
                .split_once(':')
                .ok_or_else(|| format!("{p:?}: expected uid:weight"))?;
            let u: u32 = u.trim().parse().map_err(|_| format!("{p:?}: bad uid"))?;
            let w: u16 = w
                .trim()
                .parse()
                .map_err(|_| format!("{p:?}: weight must be 0..=65535"))?;
            Ok((u, w))
        })
        .collect()
}

fn short(k: &PublicKey) -> String {
    let h = k.to_hex();
    format!("{}…{}", &h[..8], &h[56..])
}

impl Metagraph {
    /// The metagraph as pretty-printed JSON (the `--json` form of `covenant chain status`).
    pub fn to_json_pretty(&self) -> String {
        // Plain data with string map keys: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Human-readable metagraph: uids, keys, commitments, stakes, last weights, consensus weights.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "run {}  block {}  window {}  uids {}/{}",
            self.run_id,
            self.block,
            self.window,
            self.neurons.len(),
            self.max_uids
        );
        let _ = writeln!(
            s,
            "\n{:>5}  {:<19}  {:>8}  {:>6}  {:>9}  commitment",
            "uid", "key", "reg.blk", "immune", "consensus"
        );
        for n in &self.neurons {
            let c = match &n.commitment {
                Some(c) => format!(
                    "{} (block {}, read credentials {})",
                    c.bucket_url,
                    c.block,
                    if c.read_credentials.is_empty() {
                        "none"
                    } else {
                        "set"
                    }
                ),
                None => "-".into(),
            };
            let _ = writeln!(
                s,
                "{:>5}  {:<19}  {:>8}  {:>6}  {:>9.5}  {}",
                n.uid,
                short(&n.key),
                n.registered_block,
                if n.immune { "yes" } else { "no" },
                n.consensus_weight,
                c
            );
        }
        let _ = writeln!(s, "\nvalidators");
        for v in &self.validators {
            let ws: Vec<String> = v.weights.iter().map(|(u, w)| format!("{u}:{w}")).collect();
            let _ = writeln!(
                s,
                "  {}  stake {}  uid {}  weights set at block {}: {}",
                short(&v.key),
                v.stake,
                v.uid.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
                v.last_weights_block
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "never".into()),
                if ws.is_empty() {
                    "-".into()
                } else {
                    ws.join(",")
                }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1s"), Ok(1000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("12"), Ok(12_000));
        assert_eq!(parse_duration_ms("0.5s"), Ok(500));
        assert!(parse_duration_ms("0s").is_err());
        assert!(parse_duration_ms("fast").is_err());
    }

    #[test]
    fn validators_and_weights() {
        let k = Keypair::from_seed([5; 32]);
        let v = parse_validator(&format!("{}:100", k.public().to_hex())).unwrap();
        assert_eq!((v.key, v.stake), (k.public(), 100));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.key");
        k.save(&path, false).unwrap();
        assert_eq!(
            parse_validator(&format!("{}:7", path.display()))
                .unwrap()
                .stake,
            7
        );
        assert!(parse_validator("nokey:1").is_err());
        assert!(parse_validator(&format!("{}:x", k.public().to_hex())).is_err());
        assert_eq!(parse_weights("0:10, 3:5"), Ok(vec![(0, 10), (3, 5)]));
        assert!(parse_weights("0:70000").is_err());
        assert!(parse_weights("zero").is_err());
    }
}
