//! Trains a byte-level BPE tokenizer without building the whole CLI:
//! `cargo run --release -p covenant-data --example train_tokenizer -- data/corpus data/tokenizer-8192.json 8192`
//! (the same as `covenant data train-tokenizer --input data/corpus --out data/tokenizer-8192.json`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: train_tokenizer INPUT OUT.json [VOCAB_SIZE]".into());
    }
    let vocab: u32 = args.get(3).map(|v| v.parse()).transpose()?.unwrap_or(8192);
    let t0 = std::time::Instant::now();
    let t = covenant_data::train_tokenizer(
        std::path::Path::new(&args[1]),
        vocab,
        covenant_data::prepare::DEFAULT_TRAIN_BYTES,
        true,
    )?;
    t.save(std::path::Path::new(&args[2]))?;
    println!(
        "{}: vocab {} blake3 {} in {:.1?}",
        args[2],
        t.vocab_size(),
        t.hash_hex(),
        t0.elapsed()
    );
    Ok(())
}
