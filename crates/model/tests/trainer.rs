//! Trainer behaviour on the CPU: determinism, learning, exact resume, checkpoints, bad input.

use covenant_model::{DeviceChoice, ModelConfig, ModelError, OptimConfig, ParamView, Trainer};

fn tiny() -> ModelConfig {
    ModelConfig::preset("tiny").unwrap()
}

fn opt() -> OptimConfig {
    OptimConfig {
        lr: 1e-3,
        warmup_steps: 2,
        total_steps: 50,
        ..Default::default()
    }
}

fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}

fn trainer(seed: u64) -> Trainer {
    covenant_model::set_num_threads(1);
    Trainer::new(tiny(), opt(), seed, DeviceChoice::Cpu).unwrap()
}

#[test]
fn trainer_can_move_to_a_training_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Trainer>();
}

#[test]
fn seed_reproduces_the_model_and_params_follow_hf_layout() {
    let a = trainer(1).params();
    let b = trainer(1).params();
    let c = trainer(2).params();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let cfg = tiny();
    assert_eq!(a.len(), 2 + 9 * cfg.n_layers + 1);
    assert_eq!(a[0].name, "model.embed_tokens.weight");
    assert_eq!(a.last().unwrap().name, "lm_head.weight");
    let total: usize = a.iter().map(|p| p.data.len()).sum();
    assert_eq!(total as u64, cfg.num_params());
    let k = a
        .iter()
        .find(|p| p.name == "model.layers.1.self_attn.k_proj.weight")
        .unwrap();
    assert_eq!(
        k.shape,
        vec![cfg.n_kv_heads * cfg.head_dim, cfg.hidden_size]
    );
    let norm = a.iter().find(|p| p.name == "model.norm.weight").unwrap();
    assert!(norm.data.iter().all(|&x| x == 1.0));
    // init std 0.02
    let std = (a[0].data.iter().map(|x| x * x).sum::<f32>() / a[0].data.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.001, "{std}");
}

#[test]
fn loss_starts_near_uniform_and_falls_when_fitting_a_batch() {
    let mut t = trainer(3);
    let v = tiny().vocab_size;
    let batch = tokens(9, 4 * 64, v);
    let l0 = t.eval_loss(&batch, 4).unwrap();
    assert!((l0 - (v as f32).ln()).abs() < 0.3, "initial loss {l0}");
    let mut last = f32::NAN;
    for i in 0..30 {
        let s = t.step(&batch, 4).unwrap();
        assert!(s.loss.is_finite() && s.grad_norm > 0.0);
        assert!((s.lr - opt().lr_at(i)).abs() < 1e-15);
        last = s.loss;
    }
    assert_eq!(t.steps_done(), 30);
    let l1 = t.eval_loss(&batch, 4).unwrap();
    assert!(
        l1 < l0 - 2.0,
        "loss did not fall: {l0} -> {l1} (last step {last})"
    );
}

#[test]
fn a_trainer_on_a_shared_schedule_steps_at_the_schedule_s_learning_rate() {
    // A miner that joins a run late: fresh optimizer state, the run at schedule step 30.
    let b = tokens(6, 2 * 32, tiny().vocab_size);
    let mut t = trainer(12);
    let before = t.params();
    let s = t.step_at(&b, 2, 30).unwrap();
    assert_eq!(s.lr, opt().lr_at(30));
    assert!((opt().lr_at(30) - opt().lr_at(0)).abs() > 5e-5);
    assert_eq!(t.steps_done(), 1);
    // AdamW's bias correction counts the trainer's own steps: the first step from fresh moments
    // moves every coordinate with a gradient by about lr (at step 31's correction, by 0.4 lr).
    let name = "model.layers.0.mlp.up_proj.weight";
    let (a, z) = (
        before.iter().find(|p| p.name == name).unwrap(),
        t.params().into_iter().find(|p| p.name == name).unwrap(),
    );
    let moved = a
        .data
        .iter()
        .zip(&z.data)
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max);
    assert!(
        (moved - s.lr).abs() < 0.05 * s.lr,
        "moved {moved}, lr {}",
        s.lr
    );
    // The next step continues the schedule it is given.
    assert_eq!(t.step_at(&b, 2, 31).unwrap().lr, opt().lr_at(31));
}

#[test]
fn resume_from_checkpoint_is_bit_exact() {
    let v = tiny().vocab_size;
    let batches: Vec<Vec<u32>> = (0..5).map(|i| tokens(100 + i, 2 * 32, v)).collect();
    let mut a = trainer(5);
    let dir = tempfile::tempdir().unwrap();
    for b in &batches[..2] {
        a.step(b, 2).unwrap();
    }
    a.save(dir.path()).unwrap();
    for b in &batches[2..] {
        a.step(b, 2).unwrap();
    }
    let mut r = Trainer::load(dir.path(), DeviceChoice::Cpu).unwrap();
    assert_eq!(r.steps_done(), 2);
    assert_eq!(r.optim_config(), a.optim_config());
    assert_eq!(r.model_config(), a.model_config());
    for b in &batches[2..] {
        r.step(b, 2).unwrap();
    }
    assert_eq!(r.steps_done(), 5);
    let (pa, pr) = (a.params(), r.params());
    for (x, y) in pa.iter().zip(&pr) {
        assert_eq!(x.name, y.name);
        assert!(
            x.data
                .iter()
                .zip(&y.data)
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{} differs",
            x.name
        );
    }
}

#[test]
fn save_load_round_trip_is_bit_exact_for_tied_model() {
    covenant_model::set_num_threads(1);
    let cfg = ModelConfig::preset("tiny-tied").unwrap();
    let mut t = Trainer::new(cfg, opt(), 11, DeviceChoice::Cpu).unwrap();
    t.step(&tokens(1, 64, 8192), 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    t.save(dir.path()).unwrap();
    let l = Trainer::load(dir.path(), DeviceChoice::Cpu).unwrap();
    assert_eq!(t.params(), l.params());
    assert!(!t.params().iter().any(|p| p.name == "lm_head.weight"));
    for f in [
        "model.safetensors",
        "config.json",
        "optimizer.safetensors",
        "trainer.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    // and as a plain HF checkpoint (fresh optimizer)
    let h = Trainer::from_hf(dir.path(), opt(), 0, DeviceChoice::Cpu).unwrap();
    assert_eq!(h.params(), t.params());
    assert_eq!(h.steps_done(), 0);
}

#[test]
fn weight_decay_spares_norms_and_embeddings() {
    let b = tokens(4, 2 * 32, 8192);
    let mut with = Trainer::new(
        tiny(),
        OptimConfig {
            weight_decay: 0.5,
            ..opt()
        },
        8,
        DeviceChoice::Cpu,
    )
    .unwrap();
    let mut without = Trainer::new(
        tiny(),
        OptimConfig {
            weight_decay: 0.0,
            ..opt()
        },
        8,
        DeviceChoice::Cpu,
    )
    .unwrap();
    with.step(&b, 2).unwrap();
    without.step(&b, 2).unwrap();
    for (x, y) in with.params().iter().zip(&without.params()) {
        let same = x.data == y.data;
        let exempt = x.name.ends_with("norm.weight") || x.name == "model.embed_tokens.weight";
        assert_eq!(same, exempt, "{}: decayed = {}", x.name, !same);
    }
}

#[test]
fn bad_batches_are_clear_errors() {
    let mut t = trainer(6);
    let mut b = tokens(1, 2 * 16, 8192);
    assert!(matches!(t.step(&b, 3), Err(ModelError::InvalidBatch(_))));
    assert!(matches!(t.step(&b, 0), Err(ModelError::InvalidBatch(_))));
    assert!(matches!(t.step(&[], 1), Err(ModelError::InvalidBatch(_))));
    assert!(matches!(
        t.step(&b[..1], 1),
        Err(ModelError::InvalidBatch(_))
    ));
    let long = tokens(1, 129, 8192);
    assert!(t
        .step(&long, 1)
        .unwrap_err()
        .to_string()
        .contains("max_seq_len"));
    b[17] = 8192;
    match t.step(&b, 2) {
        Err(ModelError::TokenOutOfRange {
            token: 8192,
            position: 17,
            vocab_size: 8192,
        }) => {}
        other => panic!("expected TokenOutOfRange, got {other:?}"),
    }
    b[17] = u32::MAX;
    assert!(t.eval_loss(&b, 2).is_err());
    assert_eq!(t.steps_done(), 0);
}

#[test]
fn set_params_validates_and_round_trips() {
    let mut t = trainer(7);
    let src = trainer(8).params();
    t.set_params(&src).unwrap();
    assert_eq!(t.params(), src);
    let mut wrong = src[2].clone(); // q_proj, 2-D
    wrong.shape = vec![wrong.data.len()];
    assert!(matches!(
        t.set_params(&[wrong]),
        Err(ModelError::ParamMismatch(_))
    ));
    let unknown = ParamView {
        name: "model.bogus".into(),
        shape: vec![1],
        data: vec![0.0],
    };
    assert!(t
        .set_params(&[unknown])
        .unwrap_err()
        .to_string()
        .contains("model.bogus"));
    let mut short = src[2].clone();
    short.data.pop();
    assert!(t.set_params(&[short]).is_err());
    let mut nan = src[3].clone();
    nan.data[5] = f32::NAN;
    assert!(t.set_params(&[src[0].clone(), nan]).is_err());
    // nothing was applied by the failed calls
    assert_eq!(t.params(), src);
}

#[test]
fn broken_checkpoints_are_clear_errors() {
    let t = trainer(9);
    let missing = tempfile::tempdir().unwrap();
    let e = Trainer::load(missing.path(), DeviceChoice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("trainer.json"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    t.save(dir.path()).unwrap();
    let model = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let e = Trainer::load(dir.path(), DeviceChoice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");

    // a checkpoint of another shape
    let other = Trainer::new(tiny().with_vocab(4096), opt(), 1, DeviceChoice::Cpu).unwrap();
    let d2 = tempfile::tempdir().unwrap();
    other.save(d2.path()).unwrap();
    std::fs::copy(d2.path().join("model.safetensors"), &model).unwrap();
    let e = Trainer::load(dir.path(), DeviceChoice::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shape"), "{e}");

    std::fs::write(dir.path().join("trainer.json"), b"{not json").unwrap();
    assert!(matches!(
        Trainer::load(dir.path(), DeviceChoice::Cpu),
        Err(ModelError::Checkpoint { .. })
    ));
}

#[test]
fn per_sequence_losses_are_each_sequence_s_loss_and_average_to_the_batch_loss() {
    let mut t = trainer(5);
    let v = tiny().vocab_size;
    let batch = tokens(21, 3 * 32, v);
    let each = t.eval_losses(&batch, 3).unwrap();
    assert_eq!(each.len(), 3);
    for (i, l) in each.iter().enumerate() {
        let alone = t.eval_loss(&batch[i * 32..(i + 1) * 32], 1).unwrap();
        assert!((l - alone).abs() < 1e-5, "sequence {i}: {l} vs {alone}");
    }
    let mean = each.iter().sum::<f32>() / 3.0;
    let all = t.eval_loss(&batch, 3).unwrap();
    assert!((mean - all).abs() < 1e-5, "{mean} vs {all}");
    assert!(each[0] != each[1], "different sequences, different losses");
}

/// Issue 16: writing a few positions in place is the same as writing the whole model with
/// them changed, and bad writes change nothing.
#[test]
fn writing_positions_in_place_changes_those_and_nothing_else() {
    let mut a = trainer(3);
    let mut b = trainer(3);
    let before: Vec<Vec<f32>> = a.params().into_iter().map(|v| v.data).collect();
    let (t, pos) = (2usize, vec![0u32, 5, 77]);
    let vals = vec![0.5f32, -1.25, 3.0];
    a.write_at(t, &pos, &vals).unwrap();
    let mut want = before.clone();
    for (&i, &v) in pos.iter().zip(&vals) {
        want[t][i as usize] = v;
    }
    let flat: Vec<&[f32]> = want.iter().map(Vec::as_slice).collect();
    b.set_params_flat(&flat).unwrap();
    let got: Vec<Vec<f32>> = a.params().into_iter().map(|v| v.data).collect();
    assert_eq!(got, want);
    let x = tokens(1, 2 * 128, tiny().vocab_size);
    assert_eq!(a.eval_losses(&x, 2).unwrap(), b.eval_losses(&x, 2).unwrap());
    // Written back, the model is the one before.
    let old: Vec<f32> = pos.iter().map(|&i| before[t][i as usize]).collect();
    a.write_at(t, &pos, &old).unwrap();
    let back: Vec<Vec<f32>> = a.params().into_iter().map(|v| v.data).collect();
    assert_eq!(back, before);
    // Refused, and nothing written.
    let n = before[t].len() as u32;
    assert!(a.write_at(t, &[1, n], &[1.0, 1.0]).is_err(), "out of range");
    assert!(a.write_at(t, &[1], &[f32::NAN]).is_err(), "not finite");
    assert!(a.write_at(99, &[1], &[1.0]).is_err(), "no such tensor");
    assert!(a.write_at(t, &[1, 2], &[1.0]).is_err(), "lengths differ");
    let after: Vec<Vec<f32>> = a.params().into_iter().map(|v| v.data).collect();
    assert_eq!(after, before);
}

/// Issue 16: a model that is only evaluated (a validator's) holds no AdamW moments, 8 bytes a
/// parameter that a 72B validator would otherwise carry for nothing; they appear at the first
/// step, go with a reset, and a checkpoint saved before any step resumes like a fresh trainer.
#[test]
fn optimizer_state_is_allocated_at_the_first_step_only() {
    let v = tiny().vocab_size;
    let b = tokens(7, 2 * 32, v);
    let mut a = trainer(9);
    assert!(!a.holds_optimizer_state());
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    a.step(&b, 2).unwrap();
    assert!(a.holds_optimizer_state());
    let mut r = Trainer::load(dir.path(), DeviceChoice::Cpu).unwrap();
    r.step(&b, 2).unwrap();
    let bits = |t: &Trainer| -> Vec<u32> {
        t.params()
            .iter()
            .flat_map(|p| p.data.iter().map(|x| x.to_bits()))
            .collect()
    };
    assert_eq!(bits(&a), bits(&r), "resumed from a step-0 checkpoint");
    a.reset_optimizer().unwrap();
    assert!(!a.holds_optimizer_state());
}
