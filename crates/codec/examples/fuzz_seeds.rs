//! Writes valid seed inputs for `fuzz/fuzz_targets/decode_payload.rs` into DIR
//! (used by scripts/fuzz.sh): `cargo run -p covenant-codec --example fuzz_seeds -- DIR`.
fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/decode_payload".into());
    std::fs::create_dir_all(&dir)?;
    let seeds = covenant_codec::fuzzing::seed_inputs();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:02}"), s)?;
    }
    println!("wrote {} seeds to {dir}", seeds.len());
    Ok(())
}
