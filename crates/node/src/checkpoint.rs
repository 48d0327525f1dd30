//! Checkpoints for joiners (SPEC §6): validators publish the canonical model every C windows as
//! Hugging Face files plus a signed manifest written last; readers verify the manifest's signature
//! and every file's size and hash before loading, so a torn or corrupt checkpoint is never used
//! (the next older one is tried instead).

use std::path::Path;

use anyhow::{anyhow, ensure, Context, Result};
use bytes::Bytes;
use covenant_model::{Trainer, CONFIG_FILE, MODEL_FILE};

use crate::canon::{hex, Canon};
use crate::objects::{self, CkptFile, CkptManifest};
use crate::runtime::Ctx;

/// Writes the model held by `trainer` (which must equal `canon`) as the checkpoint of window `w`.
pub fn publish(ctx: &Ctx, trainer: &Trainer, canon: &Canon, w: u64) -> Result<()> {
    let tmp = ctx.node_dir.join("ckpt-out");
    let r = publish_from(ctx, trainer, canon, w, &tmp);
    // Also on failure: a half-written model must not keep taking space on a full disk.
    let _ = std::fs::remove_dir_all(&tmp);
    r
}

fn publish_from(ctx: &Ctx, trainer: &Trainer, canon: &Canon, w: u64, tmp: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(tmp);
    trainer
        .save_hf(tmp)
        .with_context(|| format!("writing the checkpoint to {}", tmp.display()))?;
    let mut files = Vec::new();
    for name in [MODEL_FILE, CONFIG_FILE] {
        let file = tmp.join(name);
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        files.push(CkptFile {
            name: name.to_string(),
            size: bytes.len() as u64,
            blake3: hex(blake3::hash(&bytes).as_bytes()),
        });
        let key = format!("{}{name}", objects::ckpt_prefix(w));
        ctx.rt
            .block_on(ctx.store.put(&key, Bytes::from(bytes)))
            .with_context(|| format!("uploading {key}"))?;
    }
    let manifest = CkptManifest {
        window: w,
        files,
        model_hash: hex(&canon.hash()),
    };
    ctx.rt.block_on(objects::put_doc(
        &ctx.store,
        &objects::ckpt_manifest_key(w),
        &ctx.key,
        ctx.run_id(),
        ctx.uid,
        w,
        objects::KIND_CHECKPOINT,
        &manifest,
    ))?;
    // Keep this checkpoint and the one before it.
    let older: Vec<u64> = list_windows(ctx, &ctx.store)?
        .into_iter()
        .filter(|&c| c + ctx.spec.checkpoint_every < w)
        .collect();
    for c in older {
        for name in ["manifest", MODEL_FILE, CONFIG_FILE] {
            let _ = ctx.rt.block_on(
                ctx.store
                    .delete(&format!("{}{name}", objects::ckpt_prefix(c))),
            );
        }
    }
    Ok(())
}

fn list_windows(ctx: &Ctx, store: &covenant_net::Store) -> Result<Vec<u64>> {
    let list = ctx.rt.block_on(store.list("ckpt/", 10_000))?;
    let mut ws: Vec<u64> = list
        .iter()
        .filter(|o| o.key.ends_with("/manifest"))
        .filter_map(|o| objects::window_of_key(&o.key))
        .collect();
    ws.sort_unstable();
    ws.dedup();
    Ok(ws)
}

/// The newest checkpoint any validator published that verifies: (window, canonical model).
pub fn newest(ctx: &Ctx) -> Result<Option<(u64, Canon)>> {
    let mut cands = Vec::new();
    for (vuid, vkey, store) in ctx.validators()? {
        match list_windows(ctx, &store) {
            Ok(ws) => cands.extend(ws.into_iter().map(|w| (w, vuid, vkey, store.clone()))),
            Err(e) => ctx.log.warn(&format!(
                "listing checkpoints of validator uid {vuid}: {e:#}"
            )),
        }
    }
    cands.sort_by(|a, b| b.0.cmp(&a.0));
    for (w, vuid, vkey, store) in cands {
        match load(ctx, &store, w, vuid, vkey) {
            Ok(c) => return Ok(Some((w, c))),
            Err(e) => ctx.log.warn(&format!(
                "checkpoint of window {w} from uid {vuid} refused: {e:#}"
            )),
        }
    }
    Ok(None)
}

fn load(
    ctx: &Ctx,
    store: &covenant_net::Store,
    w: u64,
    vuid: u32,
    vkey: covenant_net::PublicKey,
) -> Result<Canon> {
    let m: CkptManifest = ctx.rt.block_on(objects::get_doc(
        store,
        &objects::ckpt_manifest_key(w),
        ctx.run_id(),
        vuid,
        w,
        objects::KIND_CHECKPOINT,
        vkey,
    ))?;
    ensure!(m.window == w, "manifest names window {}", m.window);
    let max_model = 4 * ctx.layout.numel() as u64 + (1 << 20);
    let dir = ctx.node_dir.join("ckpt-in");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in [MODEL_FILE, CONFIG_FILE] {
        let f = m
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| anyhow!("manifest lists no {name}"))?;
        ensure!(
            f.size <= max_model,
            "{name} of {} bytes is larger than the model can be",
            f.size
        );
        let key = format!("{}{name}", objects::ckpt_prefix(w));
        let bytes = ctx.rt.block_on(store.get(&key, f.size))?;
        ensure!(
            bytes.len() as u64 == f.size,
            "{name}: {} bytes, manifest says {}",
            bytes.len(),
            f.size
        );
        let h = hex(blake3::hash(&bytes).as_bytes());
        ensure!(
            h == f.blake3,
            "{name}: content hash {h} differs from the manifest's {}",
            f.blake3
        );
        let file = dir.join(name);
        if let Err(e) = std::fs::write(&file, &bytes) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).with_context(|| format!("writing {}", file.display()));
        }
    }
    let canon = canon_from_hf(ctx, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let canon = canon?;
    let h = hex(&canon.hash());
    ensure!(
        h == m.model_hash,
        "loaded model hash {h} differs from the manifest's {}",
        m.model_hash
    );
    Ok(canon)
}

fn canon_from_hf(ctx: &Ctx, dir: &Path) -> Result<Canon> {
    let t = Trainer::from_hf(
        dir,
        ctx.spec.optim_config(),
        ctx.spec.seed,
        covenant_model::DeviceChoice::Cpu,
    )?;
    let cfg = ctx.spec.model_config(ctx.data.vocab_size() as usize)?;
    ensure!(
        *t.model_config() == cfg,
        "the checkpoint's model config is not the run's"
    );
    Canon::from_views(ctx.layout.clone(), t.try_params()?)
}
