//! Fetching peers' signed uploads for a window (SPEC §4, §8): read each one from its owner's
//! store with a size limit, accept it only if the store's own timestamp lies inside the upload
//! window, and only if its envelope verifies for (run, uid, window, kind, key). Everything else is
//! skipped with a reason; nothing here fails the whole gather.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::envelope::{open, EnvelopeError, Expected};
use crate::identity::PublicKey;
use crate::store::{ObjectInfo, Store, StoreError};

/// When an upload counts and how large it may be.
#[derive(Debug, Clone, Copy)]
pub struct UploadRule {
    /// Earliest accepted store timestamp (start of window w+1 for window w's payload).
    pub not_before: SystemTime,
    /// Latest accepted store timestamp (`not_before` + grace).
    pub not_after: SystemTime,
    /// Largest sealed object read.
    pub max_bytes: u64,
}

/// Why one peer's upload was skipped.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("uploaded {early_by:?} before the upload window opened")]
    Early { early_by: Duration },
    #[error("uploaded {late_by:?} after the upload window closed")]
    Late { late_by: Duration },
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("gather deadline passed before this upload was read")]
    Deadline,
}

/// One upload to fetch.
#[derive(Debug, Clone)]
pub struct Source {
    pub uid: u32,
    pub key: PublicKey,
    pub store: Store,
    pub object: String,
}

/// A verified upload: its store metadata and its content (the envelope stripped).
#[derive(Debug, Clone)]
pub struct Upload {
    pub info: ObjectInfo,
    pub content: Bytes,
}

/// Reads, time-checks and verifies one sealed upload.
pub async fn fetch_sealed(
    store: &Store,
    object: &str,
    expect: &Expected<'_>,
    rule: &UploadRule,
) -> Result<Upload, FetchError> {
    // The timestamp is checked on HEAD first so late/early objects are not even downloaded.
    let head = store.head(object).await?;
    check_time(head.last_modified, rule)?;
    let (info, sealed) = store.get_with_info(object, rule.max_bytes).await?;
    check_time(info.last_modified, rule)?;
    let max_content = rule.max_bytes;
    let (_, content) = open(&sealed, expect, max_content)?;
    let content = sealed.slice_ref(content);
    Ok(Upload { info, content })
}

#[allow(clippy::result_large_err)] // the error is built only on the rare rejection path
fn check_time(t: SystemTime, rule: &UploadRule) -> Result<(), FetchError> {
    if let Ok(early_by) = rule.not_before.duration_since(t) {
        if !early_by.is_zero() {
            return Err(FetchError::Early { early_by });
        }
    }
    if let Ok(late_by) = t.duration_since(rule.not_after) {
        if !late_by.is_zero() {
            return Err(FetchError::Late { late_by });
        }
    }
    Ok(())
}

/// Fetches all sources concurrently; each result is the upload or the reason it was skipped.
/// Returns when all are done or `deadline` has passed (unfinished ones: [`FetchError::Deadline`]).
pub async fn gather(
    sources: &[Source],
    run_id: &str,
    window: u64,
    kind: &str,
    rule: &UploadRule,
    deadline: Duration,
) -> Vec<(u32, Result<Upload, FetchError>)> {
    let futs = sources.iter().map(|s| async move {
        let expect = Expected {
            run_id,
            uid: s.uid,
            window,
            kind,
            signer: s.key,
        };
        let r =
            match tokio::time::timeout(deadline, fetch_sealed(&s.store, &s.object, &expect, rule))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(FetchError::Deadline),
            };
        (s.uid, r)
    });
    futures::future::join_all(futs).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::seal;
    use crate::identity::Keypair;

    fn set_mtime(dir: &std::path::Path, key: &str, t: SystemTime) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(key))
            .unwrap();
        f.set_modified(t).unwrap();
    }

    #[tokio::test]
    async fn gather_accepts_only_timely_verified_uploads() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let rule = UploadRule {
            not_before: start,
            not_after: start + Duration::from_secs(70),
            max_bytes: 10_000,
        };
        let keys: Vec<Keypair> = (0..6).map(|i| Keypair::from_seed([50 + i; 32])).collect();
        let mut sources = Vec::new();
        let mut dirs = Vec::new();
        for (uid, k) in keys.iter().enumerate() {
            let d = tempfile::tempdir().unwrap();
            let store = Store::local(d.path()).unwrap();
            let uid = uid as u32;
            let (w, body) = match uid {
                4 => (8, vec![1u8; 10]),       // replay of another window
                5 => (9, vec![1u8; 20_000]),   // oversized
                _ => (9, vec![uid as u8; 10]), // fine
            };
            let sealed = seal(k, "run", uid, w, "payload", &body).unwrap();
            store.put("w9/payload", Bytes::from(sealed)).await.unwrap();
            let t = match uid {
                1 => start - Duration::from_secs(5),  // early
                2 => start + Duration::from_secs(71), // late
                _ => start + Duration::from_secs(10),
            };
            set_mtime(d.path(), "w9/payload", t);
            // uid 3 claims someone else's key on chain.
            let key = if uid == 3 {
                keys[0].public()
            } else {
                k.public()
            };
            sources.push(Source {
                uid,
                key,
                store,
                object: "w9/payload".into(),
            });
            dirs.push(d);
        }
        sources.push(Source {
            uid: 6,
            key: keys[0].public(),
            store: Store::local(dirs[0].path()).unwrap(),
            object: "missing".into(),
        });
        let res = gather(
            &sources,
            "run",
            9,
            "payload",
            &rule,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(res.len(), 7);
        let up = res[0].1.as_ref().unwrap();
        assert_eq!(&up.content[..], &[0u8; 10]);
        assert!(
            matches!(res[1].1, Err(FetchError::Early { .. })),
            "{:?}",
            res[1].1
        );
        assert!(
            matches!(res[2].1, Err(FetchError::Late { .. })),
            "{:?}",
            res[2].1
        );
        assert!(
            matches!(
                res[3].1,
                Err(FetchError::Envelope(EnvelopeError::WrongKey { .. }))
            ),
            "{:?}",
            res[3].1
        );
        assert!(
            matches!(
                res[4].1,
                Err(FetchError::Envelope(EnvelopeError::WrongWindow { .. }))
            ),
            "{:?}",
            res[4].1
        );
        assert!(
            matches!(
                res[5].1,
                Err(FetchError::Store(StoreError::TooLarge { .. }))
            ),
            "{:?}",
            res[5].1
        );
        assert!(
            matches!(
                res[6].1,
                Err(FetchError::Store(StoreError::NotFound { .. }))
            ),
            "{:?}",
            res[6].1
        );
    }
}
