//! Tokenizer: training is deterministic and the saved tokenizer.json encodes identically in
//! Python `tokenizers`.

mod common;

use covenant_data::bundled;
use covenant_data::Tokenizer;

const SAMPLE: &str = "In the beginning God created the heaven and the earth.\n\
    To be, or not to be: that is the question:\nWhether 'tis nobler in the mind to suffer \
    the slings and arrows of outrageous fortune — 1611, 1623; café, naïve, 東京, emoji 🙂!\n\
    \tIndented\ttabs   and    spaces.  <|endoftext|> after the end.";

fn python_ids(tokenizer_json: &std::path::Path, text: &str) -> Vec<u32> {
    let out = common::run_python(
        "import sys, json, tokenizers\n\
         t = tokenizers.Tokenizer.from_file(sys.argv[1])\n\
         print(json.dumps(t.encode(sys.argv[2], add_special_tokens=False).ids))",
        &[tokenizer_json.to_str().expect("utf-8 path"), text],
    );
    serde_json::from_str(out.trim()).expect("ids json")
}

#[test]
fn trained_tokenizer_matches_python_and_is_deterministic() {
    let docs = common::documents(300);
    let a = Tokenizer::train(docs.iter(), 600).expect("train");
    let b = Tokenizer::train(docs.iter(), 600).expect("train again");
    assert_eq!(a.hash(), b.hash(), "training is not deterministic");
    assert_eq!(a.json(), b.json());
    assert!(
        a.vocab_size() <= 600 && a.vocab_size() > 257,
        "vocab {}",
        a.vocab_size()
    );
    assert_eq!(a.eot_id(), 0);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tokenizer.json");
    a.save(&path).expect("save");
    let loaded = Tokenizer::load(&path).expect("load");
    assert_eq!(
        loaded.hash(),
        a.hash(),
        "hash of the saved file differs from the trained one"
    );

    let rust = loaded.encode(SAMPLE).expect("encode");
    assert_eq!(rust, python_ids(&path, SAMPLE));
    assert_eq!(
        loaded.decode(&rust).expect("decode"),
        SAMPLE,
        "byte-level BPE must round-trip"
    );
    assert!(
        rust.contains(&0),
        "the special token must be recognized in text"
    );
    assert!(
        Tokenizer::train(docs.iter(), 100).is_err(),
        "vocab below 257 must be refused"
    );
}

#[test]
fn bundled_tokenizer_matches_python() {
    let path = bundled::tokenizer_path();
    let t = Tokenizer::load(&path).expect("bundled tokenizer");
    assert_eq!(t.vocab_size(), 8192);
    assert_eq!(t.eot_id(), 0);
    let rust = t.encode(SAMPLE).expect("encode");
    assert_eq!(rust, python_ids(&path, SAMPLE));
    assert_eq!(t.decode(&rust).expect("decode"), SAMPLE);
    // trained on English: far fewer tokens than bytes
    let text =
        "And God said, Let there be light: and there was light. And God saw the light, that it was good.";
    let n = t.encode(text).expect("encode").len();
    assert!(n * 3 < text.len(), "{n} tokens for {} bytes", text.len());
}

#[test]
fn broken_tokenizer_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad-tokenizer.json");
    std::fs::write(&p, b"{\"not\": \"a tokenizer\"}").expect("write");
    let e = Tokenizer::load(&p).expect_err("must fail").to_string();
    assert!(e.contains("bad-tokenizer.json"), "{e}");
    let e = Tokenizer::load(&dir.path().join("missing.json"))
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("missing.json"), "{e}");
}

/// `data/tokenizer-8192.json` is exactly what the documented command produces from the bundled
/// corpus (`covenant data train-tokenizer --input data/corpus --out data/tokenizer-8192.json`).
#[test]
fn bundled_tokenizer_is_reproducible_from_the_bundled_corpus() {
    let committed = Tokenizer::load(&bundled::tokenizer_path()).expect("bundled tokenizer");
    let retrained = covenant_data::train_tokenizer(
        &bundled::corpus_dir(),
        8192,
        covenant_data::prepare::DEFAULT_TRAIN_BYTES,
        false,
    )
    .expect("retrain");
    assert_eq!(retrained.hash_hex(), committed.hash_hex());
}
