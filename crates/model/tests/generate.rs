//! Generation with the key/value cache gives what recomputing the whole prefix gives.

use covenant_model::{DeviceChoice, ModelConfig, OptimConfig, SampleOptions, Trainer};

fn trainer() -> Trainer {
    covenant_model::set_num_threads(1);
    let cfg = ModelConfig::preset("tiny").unwrap();
    Trainer::new(cfg, OptimConfig::default(), 5, DeviceChoice::Cpu).unwrap()
}

fn greedy(n: usize) -> SampleOptions {
    SampleOptions {
        max_new_tokens: n,
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        stop: None,
    }
}

/// The most likely next token after `seq`, from a pass over all of it (no cache).
fn next_without_cache(t: &mut Trainer, seq: &[u32]) -> (u32, Vec<f32>) {
    let logits = t.logits(seq, 1).unwrap();
    let vocab = logits.len() / seq.len();
    let last = logits[(seq.len() - 1) * vocab..].to_vec();
    let best = (0..vocab).fold(0, |b, i| if last[i] > last[b] { i } else { b });
    (best as u32, last)
}

#[test]
fn cached_greedy_generation_is_the_full_recompute() {
    let mut t = trainer();
    let prompt = [5u32, 77, 901, 4000, 12, 12, 3];
    let g = t.generate(&prompt, &greedy(12)).unwrap();
    assert_eq!(g.tokens.len(), 12);
    let mut seq = prompt.to_vec();
    for &tok in &g.tokens {
        let (want, _) = next_without_cache(&mut t, &seq);
        assert_eq!(tok, want, "after {seq:?}");
        seq.push(tok);
    }
    assert!(g.tokens_per_sec().unwrap() > 0.0);
}

#[test]
fn sampling_is_seeded_and_stops_at_the_stop_token() {
    let t = trainer();
    let o = SampleOptions {
        max_new_tokens: 20,
        temperature: 1.0,
        top_p: 0.95,
        seed: 3,
        stop: None,
    };
    let a = t.generate(&[1, 2, 3], &o).unwrap().tokens;
    assert_eq!(a, t.generate(&[1, 2, 3], &o).unwrap().tokens);
    let other = t.generate(
        &[1, 2, 3],
        &SampleOptions {
            seed: 4,
            ..o.clone()
        },
    );
    assert_ne!(a, other.unwrap().tokens, "another seed, another text");
    // Stop at the third token sampled: it is the last one returned.
    let stop = SampleOptions {
        stop: Some(a[2]),
        ..o
    };
    let first = a.iter().position(|&x| x == a[2]).unwrap();
    assert_eq!(t.generate(&[1, 2, 3], &stop).unwrap().tokens, a[..=first]);
}

#[test]
fn prompts_the_model_cannot_take_are_refused() {
    let t = trainer();
    let e = t.generate(&[9000], &greedy(1)).unwrap_err().to_string();
    assert!(e.contains("9000"), "{e}");
    let e = t.generate(&[1; 120], &greedy(9)).unwrap_err().to_string();
    assert!(e.contains("128 positions"), "{e}");
}
