//! Log-likelihoods for evaluation (`covenant eval`): per-token losses of held-out text, and the
//! log-probability of a continuation after a context, computed as lm-evaluation-harness does for
//! a causal model (the last `max_seq_len + 1` tokens of context and continuation, the
//! continuation's log-softmax summed).

use crate::error::{ModelError, Result};
use crate::trainer::Trainer;

impl Trainer {
    /// The next-token loss (nats) of every predicted position of each of the `batch`
    /// sequences: `batch × (seq − 1)` values, row-major.
    pub fn token_losses(&mut self, tokens: &[u32], batch: usize) -> Result<Vec<f32>> {
        let x = self.tokens_tensor(tokens, batch)?;
        let _guard = tch::no_grad_guard();
        crate::trainer::host_f32(&self.model.token_losses(&x)?)
    }

    /// `log P(continuation | context)` in nats, and whether every continuation token was the
    /// most likely one. Longer inputs lose context from the left, as lm-evaluation-harness's.
    pub fn loglikelihood(&mut self, context: &[u32], continuation: &[u32]) -> Result<(f64, bool)> {
        if context.is_empty() || continuation.is_empty() {
            return Err(ModelError::InvalidBatch(
                "a log-likelihood needs a context and a continuation".into(),
            ));
        }
        let max = self.model.cfg.max_seq_len;
        if continuation.len() > max {
            return Err(ModelError::InvalidBatch(format!(
                "a continuation of {} tokens is longer than the model's {max} positions",
                continuation.len()
            )));
        }
        let whole: Vec<u32> = context.iter().chain(continuation).copied().collect();
        let keep = &whole[whole.len().saturating_sub(max + 1)..];
        let input = &keep[..keep.len() - 1];
        let ids = self.token_ids(input)?;
        let x = tch::Tensor::f_from_slice(&ids)?
            .f_view([1, input.len() as i64])?
            .f_to_device(self.model.device)?;
        let logits = {
            let _guard = tch::no_grad_guard();
            crate::trainer::host_f32(&self.model.logits(&x)?)?
        };
        let vocab = self.model.cfg.vocab_size;
        let first = keep.len() - 1 - continuation.len();
        let mut ll = 0.0f64;
        let mut greedy = true;
        for (j, &tok) in continuation.iter().enumerate() {
            let row = &logits[(first + j) * vocab..(first + j + 1) * vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = row
                .iter()
                .map(|&v| ((v - max) as f64).exp())
                .sum::<f64>()
                .ln()
                + max as f64;
            ll += row[tok as usize] as f64 - lse;
            greedy &= row[tok as usize] >= max;
        }
        Ok((ll, greedy))
    }
}
