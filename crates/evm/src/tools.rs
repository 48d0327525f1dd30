//! Where the local EVM tools are: `scripts/install-chain-tools.sh` installs them into the cache
//! outside the clone and prints these paths; the environment variables override them.

use std::path::PathBuf;

use crate::EvmError;

/// Versions `scripts/install-chain-tools.sh` installs.
pub const SOLC_VERSION: &str = "0.8.37";
pub const ANVIL_VERSION: &str = "1.7.1";

fn cache() -> PathBuf {
    if let Some(d) = std::env::var_os("COVENANT_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("covenant")
}

fn tools_dir() -> PathBuf {
    cache().join(format!(
        "evm-tools-{SOLC_VERSION}-{ANVIL_VERSION}/node_modules"
    ))
}

fn located(tool: &'static str, env: &'static str, default: PathBuf) -> Result<PathBuf, EvmError> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EvmError::ToolMissing { tool, path, env })
    }
}

/// The anvil binary (`COVENANT_ANVIL_BIN`).
pub fn anvil() -> Result<PathBuf, EvmError> {
    located(
        "anvil",
        "COVENANT_ANVIL_BIN",
        tools_dir().join("@foundry-rs/anvil-linux-amd64/bin/anvil"),
    )
}

/// solc-js's command-line script (`COVENANT_SOLCJS`; run with node).
pub fn solcjs() -> Result<PathBuf, EvmError> {
    located(
        "solc-js",
        "COVENANT_SOLCJS",
        tools_dir().join("solc/solc.js"),
    )
}
