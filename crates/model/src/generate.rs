//! Sampling text from the model (`covenant generate`): the prompt in one pass into a key/value
//! cache, then one token a pass, greedy or with temperature and nucleus (top-p) sampling from a
//! seeded generator of our own (the same seed gives the same text on any machine).

use std::time::Instant;

use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::llama::KvCache;
use crate::trainer::Trainer;

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    pub max_new_tokens: usize,
    /// 0: greedy (the most likely token, the lowest id on a tie); else logits ÷ temperature.
    pub temperature: f64,
    /// Sample from the smallest set of most likely tokens whose probability reaches this.
    pub top_p: f64,
    pub seed: u64,
    /// Stop after this token (end of text), which is included.
    pub stop: Option<u32>,
}

/// The continuation and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub tokens: Vec<u32>,
    /// The prompt's pass, and the passes of the new tokens after the first.
    pub prompt_secs: f64,
    pub decode_secs: f64,
}

impl Generated {
    /// New tokens per second after the prompt's pass (`None` with fewer than two).
    pub fn tokens_per_sec(&self) -> Option<f64> {
        (self.tokens.len() > 1 && self.decode_secs > 0.0)
            .then(|| (self.tokens.len() - 1) as f64 / self.decode_secs)
    }
}

impl Trainer {
    /// Continues `prompt` by up to `o.max_new_tokens` tokens (see [`SampleOptions`]).
    pub fn generate(&self, prompt: &[u32], o: &SampleOptions) -> Result<Generated> {
        let cfg = &self.model.cfg;
        check_options(o, prompt.len(), cfg.max_seq_len)?;
        let ids = self.token_ids(prompt)?;
        let _guard = tch::no_grad_guard();
        let mut cache = KvCache::default();
        let mut rng = o.seed ^ 0x5DEE_CE66_D1CE_4E5B;
        let t0 = Instant::now();
        let x = Tensor::f_from_slice(&ids)?
            .f_view([1, ids.len() as i64])?
            .f_to_device(self.model.device)?;
        let mut last = last_logits(&self.model.logits_after(&x, Some(&mut cache))?)?;
        let prompt_secs = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut tokens = Vec::with_capacity(o.max_new_tokens);
        loop {
            let next = pick(&last, o, &mut rng);
            tokens.push(next);
            if Some(next) == o.stop || tokens.len() == o.max_new_tokens {
                break;
            }
            let x = Tensor::f_from_slice(&[i64::from(next)])?
                .f_view([1, 1])?
                .f_to_device(self.model.device)?;
            last = last_logits(&self.model.logits_after(&x, Some(&mut cache))?)?;
        }
        Ok(Generated {
            tokens,
            prompt_secs,
            decode_secs: t1.elapsed().as_secs_f64(),
        })
    }
}

fn check_options(o: &SampleOptions, prompt: usize, max_seq_len: usize) -> Result<()> {
    let bad = |m: String| Err(ModelError::InvalidBatch(m));
    if prompt == 0 {
        return bad("the prompt has no tokens".into());
    }
    if o.max_new_tokens == 0 {
        return bad("max_new_tokens must be at least 1".into());
    }
    if prompt + o.max_new_tokens > max_seq_len {
        return bad(format!(
            "{prompt} prompt tokens + {} new ones exceed the model's {max_seq_len} positions",
            o.max_new_tokens
        ));
    }
    if !(o.temperature.is_finite() && o.temperature >= 0.0) {
        return bad(format!("temperature {} must be ≥ 0", o.temperature));
    }
    if !(o.top_p > 0.0 && o.top_p <= 1.0) {
        return bad(format!("top_p {} must be in (0, 1]", o.top_p));
    }
    Ok(())
}

/// The last position's logits of a `[1, T, vocab]` tensor, on the host.
fn last_logits(logits: &Tensor) -> Result<Vec<f32>> {
    let t = logits.size()[1];
    let row = logits
        .f_select(0, 0)?
        .f_select(0, t - 1)?
        .f_to_kind(Kind::Float)?
        .f_to_device(tch::Device::Cpu)?
        .f_contiguous()?;
    let n = row.numel();
    let mut out = vec![0f32; n];
    row.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// The next token from `logits` (see [`SampleOptions`]).
fn pick(logits: &[f32], o: &SampleOptions, rng: &mut u64) -> u32 {
    let argmax = || {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    if o.temperature == 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut p: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, ((v as f64 - max) / o.temperature).exp()))
        .filter(|(_, w)| w.is_finite() && *w > 0.0)
        .collect();
    if p.is_empty() {
        return argmax();
    }
    // Most likely first, lower ids first among equals.
    p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: f64 = p.iter().map(|x| x.1).sum();
    let mut kept = 0.0;
    let mut n = 0;
    for &(_, w) in &p {
        kept += w;
        n += 1;
        if kept >= o.top_p * total {
            break;
        }
    }
    let mut u = uniform(rng) * kept;
    for &(i, w) in &p[..n] {
        if u < w {
            return i as u32;
        }
        u -= w;
    }
    p[n - 1].0 as u32
}

/// A uniform number in [0, 1) (SplitMix64).
fn uniform(s: &mut u64) -> f64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(temperature: f64, top_p: f64) -> SampleOptions {
        SampleOptions {
            max_new_tokens: 1,
            temperature,
            top_p,
            seed: 0,
            stop: None,
        }
    }

    #[test]
    fn greedy_takes_the_most_likely_and_the_lowest_id_on_a_tie() {
        let mut rng = 0;
        assert_eq!(pick(&[0.1, 2.0, -1.0, 2.0], &opts(0.0, 1.0), &mut rng), 1);
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities ∝ e^0 : e^-10 : e^-10: top-p 0.9 keeps token 0 alone.
        let mut rng = 7;
        for _ in 0..200 {
            assert_eq!(pick(&[0.0, -10.0, -10.0], &opts(1.0, 0.9), &mut rng), 0);
        }
        // Top-p 1 and a high temperature reach every token.
        let mut seen = [false; 3];
        for _ in 0..200 {
            seen[pick(&[0.0, -1.0, -2.0], &opts(5.0, 1.0), &mut rng) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let o = opts(-1.0, 1.0);
        let e = check_options(&o, 4, 128).unwrap_err().to_string();
        assert!(e.contains("temperature"), "{e}");
        let e = check_options(&opts(1.0, 0.0), 4, 128)
            .unwrap_err()
            .to_string();
        assert!(e.contains("top_p"), "{e}");
        let mut long = opts(1.0, 1.0);
        long.max_new_tokens = 125;
        let e = check_options(&long, 4, 128).unwrap_err().to_string();
        assert!(e.contains("128 positions"), "{e}");
        assert!(check_options(&opts(1.0, 1.0), 0, 128).is_err());
    }
}
