//! prepare (text, JSONL, Parquet, zstd) → shards + manifest, the train/val split, and the reader's
//! refusal of corrupt, truncated or mismatched data.

mod common;

use std::path::{Path, PathBuf};

use covenant_data::prepare::{is_val_document, PrepareOptions, TokenizerSource};
use covenant_data::{prepare, Dataset, Manifest, OpenOptions, Split, Tokenizer};

fn tokenizer(dir: &Path) -> PathBuf {
    let t = Tokenizer::train(common::documents(200).iter(), 700).expect("train");
    let p = dir.join("tok.json");
    t.save(&p).expect("save");
    p
}

fn opts(tok: &Path, seq_len: u32, val: f64, shard_tokens: u64) -> PrepareOptions {
    PrepareOptions {
        tokenizer: TokenizerSource::File(tok.to_path_buf()),
        seq_len,
        val_fraction: val,
        shard_tokens,
        progress: false,
        source: None,
    }
}

/// All tokens of a split, read back from the shard files.
fn split_tokens(dir: &Path, m: &Manifest, split: Split) -> Vec<u32> {
    let info = if split == Split::Train {
        &m.train
    } else {
        &m.val
    };
    let mut out = vec![];
    for s in &info.shards {
        let b = std::fs::read(dir.join(&s.file)).expect("read shard");
        out.extend(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    out
}

/// Decoded documents of a split (cut at the end-of-text id).
fn split_documents(dir: &Path, m: &Manifest, split: Split, tok: &Tokenizer) -> Vec<String> {
    let toks = split_tokens(dir, m, split);
    toks.split(|&t| t == m.tokenizer.eot_id)
        .filter(|d| !d.is_empty())
        .map(|d| tok.decode(d).expect("decode"))
        .collect()
}

#[test]
fn jsonl_prepare_splits_by_document_and_round_trips() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tok_path = tokenizer(tmp.path());
    let tok = Tokenizer::load(&tok_path).expect("load");
    let docs = common::documents(100);
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    common::write_jsonl(&input.join("a.jsonl"), &docs[..60]);
    common::write_jsonl(&input.join("b.jsonl"), &docs[60..]);
    std::fs::write(input.join("ignored.csv"), "x").expect("write");
    let out = tmp.path().join("out");
    // small shards to get several per split
    let m = prepare(&input, &out, &opts(&tok_path, 16, 0.1, 1000)).expect("prepare");

    assert_eq!(m.train.documents + m.val.documents, 100);
    assert_eq!(m.val.documents, 10, "every 10th document");
    assert!(
        m.train.shards.len() > 1,
        "expected several train shards: {:?}",
        m.train.shards.len()
    );
    assert_eq!(m.tokenizer.blake3, tok.hash_hex());
    assert_eq!(m.tokenizer.vocab_size, tok.vocab_size());
    assert_eq!(m.total_tokens, m.train.tokens + m.val.tokens);

    let train_docs = split_documents(&out, &m, Split::Train, &tok);
    let val_docs = split_documents(&out, &m, Split::Val, &tok);
    assert_eq!(train_docs.len(), 90);
    assert_eq!(val_docs.len(), 10);
    for (i, d) in docs.iter().enumerate() {
        let in_val = val_docs.contains(d);
        let in_train = train_docs.contains(d);
        assert!(
            in_val != in_train,
            "document {i} must be in exactly one split"
        );
        assert_eq!(in_val, is_val_document(i as u64, 0.1));
    }

    let ds = Dataset::open_with(
        &out,
        &OpenOptions {
            verify: true,
            ..Default::default()
        },
    )
    .expect("open");
    let per_shard: u64 = m.train.shards.iter().map(|s| s.tokens / 16).sum();
    assert_eq!(ds.num_samples(Split::Train), per_shard);
    assert!(ds.num_samples(Split::Val) > 0);
    // samples are the consecutive windows of the shards
    let all = split_tokens(&out, &m, Split::Train);
    assert_eq!(ds.sample(Split::Train, 0).expect("sample"), all[..16]);
    assert_eq!(ds.sample(Split::Train, 1).expect("sample"), all[16..32]);
    let last = ds.num_samples(Split::Train) - 1;
    let s = ds.sample(Split::Train, last).expect("last sample");
    assert_eq!(s.len(), 16);
    assert!(ds.sample(Split::Train, last + 1).is_err());
    // a longer seq_len override gives fewer samples
    let ds32 = Dataset::open_with(
        &out,
        &OpenOptions {
            seq_len: Some(32),
            ..Default::default()
        },
    )
    .expect("open");
    assert!(ds32.num_samples(Split::Train) < ds.num_samples(Split::Train));

    // preparing again is deterministic
    let out2 = tmp.path().join("out2");
    let m2 = prepare(&input, &out2, &opts(&tok_path, 16, 0.1, 1000)).expect("prepare again");
    assert_eq!(m, m2);
}

#[test]
fn text_and_zstd_inputs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tok_path = tokenizer(tmp.path());
    let tok = Tokenizer::load(&tok_path).expect("load");
    // ~200 KB of paragraphs: plain text is cut into documents at blank lines after 64 KiB
    let para: Vec<String> = common::documents(400);
    let text = para.join("\n");
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("book.txt"), &text).expect("write");
    let z = zstd::encode_all(text.as_bytes(), 3).expect("zstd");
    std::fs::write(input.join("book2.txt.zst"), z).expect("write");
    let out = tmp.path().join("out");
    let m = prepare(&input, &out, &opts(&tok_path, 64, 0.3, 1 << 20)).expect("prepare");
    let n_docs = m.train.documents + m.val.documents;
    assert!(n_docs >= 4, "{n_docs} documents");
    let mut docs = split_documents(&out, &m, Split::Train, &tok);
    docs.extend(split_documents(&out, &m, Split::Val, &tok));
    let joined: usize = docs.iter().map(|d| d.len()).sum();
    assert_eq!(joined, 2 * text.len(), "all text must be kept");
}

#[test]
fn parquet_input_written_by_pyarrow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tok_path = tokenizer(tmp.path());
    let tok = Tokenizer::load(&tok_path).expect("load");
    let docs = common::documents(50);
    let jsonl = tmp.path().join("src.jsonl");
    common::write_jsonl(&jsonl, &docs);
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    // FineWeb-like: several columns, small row groups, two codecs and a null
    common::run_python(
        "import sys, json, pyarrow as pa, pyarrow.parquet as pq\n\
         texts = [json.loads(l)['text'] for l in open(sys.argv[1])]\n\
         for codec in ['snappy', 'zstd', 'gzip', 'none']:\n\
         \x20   t = pa.table({'id': [f'<urn:{i}>' for i in range(len(texts))] + ['null'],\n\
         \x20                 'text': texts + [None],\n\
         \x20                 'score': [0.5] * (len(texts) + 1)})\n\
         \x20   pq.write_table(t, f'{sys.argv[2]}/part-{codec}.parquet', compression=codec, row_group_size=7)\n",
        &[jsonl.to_str().expect("path"), input.to_str().expect("path")],
    );
    let out = tmp.path().join("out");
    let m = prepare(&input, &out, &opts(&tok_path, 32, 0.0, 1 << 20)).expect("prepare");
    assert_eq!(
        m.train.documents, 200,
        "four files (snappy, zstd, gzip, uncompressed) of 50 rows (nulls skipped)"
    );
    assert_eq!(m.val.documents, 0);
    let got = split_documents(&out, &m, Split::Train, &tok);
    let expected: Vec<String> = (0..4).flat_map(|_| docs.iter().cloned()).collect();
    assert_eq!(got, expected);

    // a Parquet file without a text column is a clear error
    let bad = tmp.path().join("notext.parquet");
    common::run_python(
        "import sys, pyarrow as pa, pyarrow.parquet as pq\npq.write_table(pa.table({'body': ['x']}), sys.argv[1])",
        &[bad.to_str().expect("path")],
    );
    let e = prepare(
        &bad,
        &tmp.path().join("o2"),
        &opts(&tok_path, 32, 0.0, 1 << 20),
    )
    .expect_err("no text column");
    let e = e.to_string();
    assert!(e.contains("notext.parquet") && e.contains("text"), "{e}");
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tok_path = tokenizer(tmp.path());
    let o = opts(&tok_path, 16, 0.0, 1000);
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\": \"fine\"}\n{\"content\": \"no text field\"}\n",
    )
    .expect("write");
    let e = prepare(&bad, &tmp.path().join("o1"), &o)
        .expect_err("missing field")
        .to_string();
    assert!(e.contains("bad.jsonl") && e.contains("line 2"), "{e}");
    std::fs::write(&bad, "{\"text\": 5}\n").expect("write");
    let e = prepare(&bad, &tmp.path().join("o1"), &o)
        .expect_err("not a string")
        .to_string();
    assert!(e.contains("bad.jsonl") && e.contains("line 1"), "{e}");
    std::fs::write(&bad, "{not json\n").expect("write");
    assert!(prepare(&bad, &tmp.path().join("o1"), &o).is_err());
    let latin1 = tmp.path().join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9\n").expect("write");
    let e = prepare(&latin1, &tmp.path().join("o2"), &o)
        .expect_err("not utf-8")
        .to_string();
    assert!(e.contains("latin1.txt"), "{e}");
    let odd = tmp.path().join("data.csv");
    std::fs::write(&odd, "a,b").expect("write");
    let e = prepare(&odd, &tmp.path().join("o3"), &o)
        .expect_err("unsupported")
        .to_string();
    assert!(e.contains("data.csv"), "{e}");
    let mut o2 = o.clone();
    o2.val_fraction = 1.0;
    assert!(prepare(&bad, &tmp.path().join("o4"), &o2).is_err());
}

/// A small prepared dataset for the corruption tests.
fn prepared(tmp: &Path) -> (PathBuf, Manifest) {
    let tok_path = tokenizer(tmp);
    let input = tmp.join("in.jsonl");
    common::write_jsonl(&input, &common::documents(40));
    let out = tmp.join("ds");
    let m = prepare(&input, &out, &opts(&tok_path, 8, 0.25, 500)).expect("prepare");
    (out, m)
}

#[test]
fn truncated_or_missing_shard_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, m) = prepared(tmp.path());
    let shard = dir.join(&m.train.shards[1].file);
    let bytes = std::fs::read(&shard).expect("read");
    std::fs::write(&shard, &bytes[..bytes.len() - 6]).expect("truncate");
    let e = Dataset::open(&dir).expect_err("truncated").to_string();
    assert!(
        e.contains(&m.train.shards[1].file) && e.contains("truncated"),
        "{e}"
    );
    std::fs::remove_file(&shard).expect("rm");
    let e = Dataset::open(&dir).expect_err("missing").to_string();
    assert!(e.contains(&m.train.shards[1].file), "{e}");
}

#[test]
fn hash_mismatch_is_found_by_verify() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, m) = prepared(tmp.path());
    let shard = dir.join(&m.val.shards[0].file);
    let mut bytes = std::fs::read(&shard).expect("read");
    bytes[5] ^= 0x01; // still a small id, same size
    std::fs::write(&shard, &bytes).expect("write");
    Dataset::open(&dir).expect("structure is fine without verification");
    let e = Dataset::open_with(
        &dir,
        &OpenOptions {
            verify: true,
            ..Default::default()
        },
    )
    .expect_err("hash")
    .to_string();
    assert!(
        e.contains(&m.val.shards[0].file) && e.contains("BLAKE3"),
        "{e}"
    );
}

#[test]
fn token_ids_beyond_the_vocabulary_are_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, mut m) = prepared(tmp.path());
    let name = m.train.shards[0].file.clone();
    let shard = dir.join(&name);
    let mut bytes = std::fs::read(&shard).expect("read");
    bytes[12..16].copy_from_slice(&m.tokenizer.vocab_size.to_le_bytes()); // token 3 of sample 0
    std::fs::write(&shard, &bytes).expect("write");
    // even with a matching hash, the ids are checked
    m.train.shards[0].blake3 = blake3::hash(&bytes).to_hex().to_string();
    m.write(&dir.join("manifest.json")).expect("manifest");
    let ds = Dataset::open(&dir).expect("open");
    let e = ds.sample(Split::Train, 0).expect_err("sample").to_string();
    assert!(e.contains(&name) && e.contains("vocabulary"), "{e}");
    ds.sample(Split::Train, 1).expect("other samples are fine");
    let e = ds.verify().expect_err("verify").to_string();
    assert!(e.contains(&name) && e.contains("vocabulary"), "{e}");
}

#[test]
fn manifest_for_another_tokenizer_or_version_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, m) = prepared(tmp.path());
    let ds = Dataset::open(&dir).expect("open");
    let right = ds.tokenizer_hash();
    let opts = OpenOptions {
        expected_tokenizer: Some(right),
        ..Default::default()
    };
    Dataset::open_with(&dir, &opts).expect("right tokenizer");
    let mut wrong = right;
    wrong[0] ^= 1;
    let e = Dataset::open_with(
        &dir,
        &OpenOptions {
            expected_tokenizer: Some(wrong),
            ..Default::default()
        },
    )
    .expect_err("wrong tokenizer")
    .to_string();
    assert!(
        e.contains("manifest.json") && e.contains("tokenizer"),
        "{e}"
    );

    // tokenizer.json replaced by another one
    let other = Tokenizer::train(common::documents(30).iter(), 400).expect("train");
    other.save(&dir.join("tokenizer.json")).expect("save");
    let e = Dataset::open(&dir)
        .expect_err("other tokenizer.json")
        .to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    std::fs::remove_file(dir.join("tokenizer.json")).expect("rm");

    let mp = dir.join("manifest.json");
    let mut m2 = m.clone();
    m2.version = 99;
    std::fs::write(&mp, serde_json::to_vec(&m2).expect("json")).expect("write");
    let e = Dataset::open(&dir).expect_err("version").to_string();
    assert!(
        e.contains("manifest.json") && e.contains("version 99"),
        "{e}"
    );
    let mut v2 = serde_json::to_value(&m2).expect("json");
    v2["version"] = 2.into();
    v2["new_field"] = "from the future".into();
    std::fs::write(&mp, serde_json::to_vec(&v2).expect("json")).expect("write");
    let e = Dataset::open(&dir).expect_err("v2").to_string();
    assert!(e.contains("version 2 is not supported"), "{e}");
    let mut m3 = m.clone();
    m3.train.tokens += 1;
    std::fs::write(&mp, serde_json::to_vec(&m3).expect("json")).expect("write");
    assert!(Dataset::open(&dir).is_err());
    let mut m4 = m.clone();
    m4.train.shards[0].file = "../escape.bin".into();
    std::fs::write(&mp, serde_json::to_vec(&m4).expect("json")).expect("write");
    assert!(Dataset::open(&dir).is_err());
    std::fs::write(&mp, b"{ truncated").expect("write");
    let e = Dataset::open(&dir).expect_err("bad json").to_string();
    assert!(e.contains("manifest.json"), "{e}");
}

#[test]
fn train_tokenizer_on_a_directory_with_a_byte_cap() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    common::write_jsonl(&input.join("a.jsonl"), &common::documents(300));
    let full = covenant_data::train_tokenizer(&input, 600, u64::MAX, false).expect("full");
    let capped = covenant_data::train_tokenizer(&input, 600, 2_000, false).expect("capped");
    assert_ne!(
        full.hash(),
        capped.hash(),
        "the cap must limit the training text"
    );
    assert!(capped.vocab_size() <= full.vocab_size());
    // the same documents through the library entry point give the same tokenizer as Tokenizer::train
    let direct = Tokenizer::train(common::documents(300).iter(), 600).expect("direct");
    assert_eq!(direct.hash(), full.hash());
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "\n\n").expect("write");
    assert!(covenant_data::train_tokenizer(&empty, 600, u64::MAX, false).is_err());
}
