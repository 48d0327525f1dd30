//! `covenant keygen`: create a participant's ed25519 key file (mode 0600). The public key it
//! prints is the participant's identity on chain and in every signed upload.

use std::path::PathBuf;

use anyhow::{Context, Result};
use covenant_net::Keypair;

#[derive(clap::Args)]
pub struct Args {
    /// Where to write the key file (created readable by its owner only).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing key file (the old key is lost).
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> Result<()> {
    let key = Keypair::generate().context("generating a key")?;
    key.save(&a.out, a.force)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!("wrote {} (mode 0600); public key:", a.out.display());
    println!("{}", key.public());
    Ok(())
}
