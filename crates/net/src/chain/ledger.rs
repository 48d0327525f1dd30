//! The embedded chain ledger: a SQLite database in WAL mode that several processes on one machine
//! share (`<dir>/ledger.sqlite3`). Each transaction is applied inside one `BEGIN IMMEDIATE`
//! SQLite transaction, so concurrent submitters are serialised by SQLite's write lock and a
//! rejected transaction changes nothing. Blocks are not stored: they follow from the genesis time
//! and the injected [`Clock`].
//!
//! A snapshot never changes once its block has passed: a transaction takes its block only once
//! it holds the write lock (a block read before waiting for the lock could already have passed),
//! and a snapshot is read under the same lock. Both record the block they saw as the ledger's
//! sealed block (`meta.sealed_block`), and no transaction is stamped below it, so a clock that
//! steps back cannot reopen a block that a node has read either.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    Chain, ChainError, Commitment, Genesis, Metagraph, Neuron, Receipt, Rejection, Snapshot,
    Transaction, TxBody, ValidatorState,
};
use crate::clock::{Clock, SystemClock};
use crate::identity::PublicKey;
use covenant_core::consensus::yuma_consensus;
use covenant_core::weights::BURN_UID;

pub const LEDGER_FILE: &str = "ledger.sqlite3";
const SCHEMA_VERSION: &str = "3";

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE uids (uid INTEGER PRIMARY KEY, hotkey BLOB NOT NULL UNIQUE, registered_block INTEGER NOT NULL);
CREATE TABLE commitments (uid INTEGER PRIMARY KEY, bucket_url TEXT NOT NULL, read_credentials TEXT NOT NULL, block INTEGER NOT NULL);
CREATE TABLE weights (validator BLOB NOT NULL, uid INTEGER NOT NULL, weight INTEGER NOT NULL, PRIMARY KEY (validator, uid));
CREATE TABLE weights_set (validator BLOB PRIMARY KEY, block INTEGER NOT NULL);
CREATE TABLE weights_log (id INTEGER PRIMARY KEY AUTOINCREMENT, validator BLOB NOT NULL, block INTEGER NOT NULL, weights TEXT NOT NULL);
CREATE INDEX weights_log_by_validator ON weights_log (validator, block);
CREATE TABLE nonces (hotkey BLOB PRIMARY KEY, nonce INTEGER NOT NULL);
CREATE TABLE balances (hotkey BLOB PRIMARY KEY, amount INTEGER NOT NULL);
CREATE TABLE txlog (id INTEGER PRIMARY KEY AUTOINCREMENT, block INTEGER NOT NULL, signer BLOB NOT NULL, kind TEXT NOT NULL, outcome TEXT NOT NULL);
";

/// The embedded ledger. Cheap to open; one per process (or per thread) is fine.
pub struct Ledger {
    conn: Mutex<Connection>,
    genesis: Genesis,
    clock: Arc<dyn Clock>,
    path: PathBuf,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.path.display())
    }
}

fn storage(path: &Path, e: impl std::fmt::Display + 'static) -> ChainError {
    let mut reason = e.to_string();
    // SQLite says "attempt to write a readonly database" or "unable to open database file" but
    // not why: find the OS error (no permission, read-only file system) on the file or its
    // directory, so that the message says what to fix.
    if let Some(rusqlite::Error::SqliteFailure(f, _)) =
        (&e as &dyn std::any::Any).downcast_ref::<rusqlite::Error>()
    {
        use rusqlite::ErrorCode as C;
        if matches!(
            f.code,
            C::ReadOnly | C::CannotOpen | C::PermissionDenied | C::SystemIoFailure
        ) {
            if let Some(os) = os_error_at(path) {
                reason = format!("{reason} ({os})");
            }
        }
    }
    ChainError::Storage {
        path: path.display().to_string(),
        reason,
    }
}

/// Why the ledger file `path` or its directory cannot be written, if the OS says so: the file
/// is opened for writing (without changing it) and a file is created and removed beside it.
fn os_error_at(path: &Path) -> Option<String> {
    if path.is_file() {
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            return Some(format!("{}: {e}", path.display()));
        }
    }
    let dir = path.parent()?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => Some(format!("{}: {e}", dir.display())),
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<(), ChainError> {
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| storage(path, e))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| storage(path, e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| storage(path, e))?;
    Ok(())
}

/// Creates the schema and stores the genesis, in one transaction.
fn write_genesis(conn: &mut Connection, path: &Path, genesis: &Genesis) -> Result<(), ChainError> {
    let json = serde_json::to_string(genesis).map_err(|e| storage(path, e))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(|e| storage(path, e))?;
    tx.execute_batch(SCHEMA).map_err(|e| storage(path, e))?;
    tx.execute(
        "INSERT INTO meta VALUES ('schema', ?1), ('genesis', ?2), ('burned', '0')",
        params![SCHEMA_VERSION, json],
    )
    .map_err(|e| storage(path, e))?;
    for b in &genesis.balances {
        tx.execute(
            "INSERT INTO balances (hotkey, amount) VALUES (?1, ?2)",
            params![&b.key.0[..], b.amount],
        )
        .map_err(|e| storage(path, e))?;
    }
    tx.commit().map_err(|e| storage(path, e))
}

fn key_from_blob(path: &Path, b: Vec<u8>) -> Result<PublicKey, ChainError> {
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| storage(path, "stored key is not 32 bytes"))?;
    Ok(PublicKey(arr))
}

impl Ledger {
    /// Creates a new ledger in `dir` (created if missing); fails if one exists there.
    pub fn init(dir: &Path, genesis: &Genesis) -> Result<(), ChainError> {
        genesis.validate()?;
        std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
        let path = dir.join(LEDGER_FILE);
        if path.exists() {
            return Err(ChainError::Exists {
                path: path.display().to_string(),
            });
        }
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| storage(&path, e))?;
        configure(&conn, &path)?;
        write_genesis(&mut conn, &path, genesis)
    }

    /// A ledger that lives in memory only (the simulator's chain): the same rules and the same
    /// SQL as the shared file, on `clock`.
    pub fn in_memory(genesis: &Genesis, clock: Arc<dyn Clock>) -> Result<Ledger, ChainError> {
        genesis.validate()?;
        let path = PathBuf::from(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|e| storage(&path, e))?;
        write_genesis(&mut conn, &path, genesis)?;
        Ok(Ledger {
            conn: Mutex::new(conn),
            genesis: genesis.clone(),
            clock,
            path,
        })
    }

    /// Opens an existing ledger with the system clock.
    pub fn open(dir: &Path) -> Result<Ledger, ChainError> {
        Self::open_with_clock(dir, Arc::new(SystemClock))
    }

    /// Opens an existing ledger with the given clock (a virtual one in tests).
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<Ledger, ChainError> {
        let path = dir.join(LEDGER_FILE);
        if !path.is_file() {
            return Err(ChainError::Missing {
                path: path.display().to_string(),
            });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| storage(&path, e))?;
        configure(&conn, &path)?;
        let get = |k: &str| -> Result<String, ChainError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| storage(&path, format!("reading {k}: {e}")))
        };
        let schema = get("schema")?;
        if schema != SCHEMA_VERSION {
            return Err(storage(
                &path,
                format!("schema version {schema}, this build reads {SCHEMA_VERSION}"),
            ));
        }
        let genesis: Genesis = serde_json::from_str(&get("genesis")?)
            .map_err(|e| storage(&path, format!("genesis: {e}")))?;
        genesis.validate()?;
        Ok(Ledger {
            conn: Mutex::new(conn),
            genesis,
            clock,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, ChainError> {
        self.conn
            .lock()
            .map_err(|_| storage(&self.path, "connection lock poisoned"))
    }

    /// Consensus weights per registered uid, computed from the stored weights.
    fn consensus(&self, conn: &Connection) -> Result<Vec<(u32, PublicKey, u64, f64)>, ChainError> {
        let p = &self.path;
        let mut st = conn
            .prepare("SELECT uid, hotkey, registered_block FROM uids ORDER BY uid")
            .map_err(|e| storage(p, e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, u64>(2)?,
                ))
            })
            .map_err(|e| storage(p, e))?;
        let mut neurons = Vec::new();
        for r in rows {
            let (uid, key, block) = r.map_err(|e| storage(p, e))?;
            neurons.push((uid, key_from_blob(p, key)?, block));
        }
        let uids: Vec<u32> = neurons.iter().map(|n| n.0).chain([BURN_UID]).collect();
        let mut validators = Vec::new();
        for v in &self.genesis.validators {
            validators.push((v.stake, self.weights_of(conn, &v.key)?));
        }
        let c = yuma_consensus(&uids, &validators, self.genesis.kappa);
        Ok(neurons
            .into_iter()
            .zip(c.weights)
            .map(|((u, k, b), w)| (u, k, b, w))
            .collect())
    }

    fn weights_of(
        &self,
        conn: &Connection,
        key: &PublicKey,
    ) -> Result<Vec<(u32, u16)>, ChainError> {
        let p = &self.path;
        let mut st = conn
            .prepare("SELECT uid, weight FROM weights WHERE validator = ?1 ORDER BY uid")
            .map_err(|e| storage(p, e))?;
        let rows = st
            .query_map([&key.0[..]], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, u16>(1)?))
            })
            .map_err(|e| storage(p, e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| storage(p, e))
    }

    /// In a transaction holding the write lock: the block now, never below the sealed block,
    /// recorded as the new sealed block. Transactions are stamped with it.
    fn seal(&self, db: &rusqlite::Transaction<'_>) -> Result<u64, ChainError> {
        let p = &self.path;
        let sealed: Option<String> = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'sealed_block'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| storage(p, e))?;
        let sealed = match sealed {
            Some(v) => v
                .parse::<u64>()
                .map_err(|e| storage(p, format!("sealed block {v:?}: {e}")))?,
            None => 0,
        };
        let block = self.block().max(sealed);
        if block > sealed {
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('sealed_block', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [block.to_string()],
            )
            .map_err(|e| storage(p, e))?;
        }
        Ok(block)
    }

    fn balance_in(conn: &Connection, p: &Path, key: &PublicKey) -> Result<u64, ChainError> {
        let b: Option<u64> = conn
            .query_row(
                "SELECT amount FROM balances WHERE hotkey = ?1",
                [&key.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| storage(p, e))?;
        Ok(b.unwrap_or(0))
    }

    fn set_balance(
        conn: &Connection,
        p: &Path,
        key: &PublicKey,
        amount: u64,
    ) -> Result<(), ChainError> {
        conn.execute(
            "INSERT INTO balances (hotkey, amount) VALUES (?1, ?2) ON CONFLICT(hotkey) DO UPDATE SET amount = excluded.amount",
            params![&key.0[..], amount],
        )
        .map_err(|e| storage(p, e))?;
        Ok(())
    }

    /// Takes `amount` from `key`'s balance, or rejects with what it has.
    fn debit(
        conn: &Connection,
        p: &Path,
        key: &PublicKey,
        amount: u64,
    ) -> Result<Result<(), Rejection>, ChainError> {
        let balance = Self::balance_in(conn, p, key)?;
        if balance < amount {
            return Ok(Err(Rejection::InsufficientBalance {
                needed: amount,
                balance,
            }));
        }
        Self::set_balance(conn, p, key, balance - amount)?;
        Ok(Ok(()))
    }

    /// Burns the registration cost from the signer (`Genesis::registration_burn`).
    fn burn_registration(
        &self,
        conn: &Connection,
        key: &PublicKey,
    ) -> Result<Result<(), Rejection>, ChainError> {
        let (p, burn) = (&self.path, self.genesis.registration_burn);
        if burn == 0 {
            return Ok(Ok(()));
        }
        if let Err(r) = Self::debit(conn, p, key, burn)? {
            return Ok(Err(r));
        }
        conn.execute(
            "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + ?1 AS TEXT) WHERE key = 'burned'",
            [burn],
        )
        .map_err(|e| storage(p, e))?;
        Ok(Ok(()))
    }

    /// Everything burned by registrations so far.
    pub fn burned_total(&self) -> Result<u64, ChainError> {
        let conn = self.lock()?;
        let v: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'burned'", [], |r| {
                r.get(0)
            })
            .map_err(|e| storage(&self.path, e))?;
        v.parse()
            .map_err(|e| storage(&self.path, format!("burned total {v:?}: {e}")))
    }

    fn uid_of(conn: &Connection, p: &Path, key: &PublicKey) -> Result<Option<u32>, ChainError> {
        conn.query_row(
            "SELECT uid FROM uids WHERE hotkey = ?1",
            [&key.0[..]],
            |r| r.get::<_, u32>(0),
        )
        .optional()
        .map_err(|e| storage(p, e))
    }

    /// Applies `tx` in the open SQLite transaction; `Err(Rejection)` leaves it to be rolled back.
    fn apply(
        &self,
        db: &rusqlite::Transaction<'_>,
        tx: &Transaction,
        block: u64,
    ) -> Result<Result<Receipt, Rejection>, ChainError> {
        let p = &self.path;
        let g = &self.genesis;
        let last: Option<u64> = db
            .query_row(
                "SELECT nonce FROM nonces WHERE hotkey = ?1",
                [&tx.signer.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| storage(p, e))?;
        if let Some(last) = last {
            if tx.nonce <= last {
                return Ok(Err(Rejection::Replay {
                    nonce: tx.nonce,
                    last,
                }));
            }
        }
        db.execute(
            "INSERT INTO nonces (hotkey, nonce) VALUES (?1, ?2) ON CONFLICT(hotkey) DO UPDATE SET nonce = excluded.nonce",
            params![&tx.signer.0[..], tx.nonce],
        )
        .map_err(|e| storage(p, e))?;
        let receipt = match &tx.body {
            TxBody::Register => {
                if let Some(uid) = Self::uid_of(db, p, &tx.signer)? {
                    return Ok(Err(Rejection::AlreadyRegistered(uid)));
                }
                let taken: Vec<u32> = {
                    let mut st = db
                        .prepare("SELECT uid FROM uids ORDER BY uid")
                        .map_err(|e| storage(p, e))?;
                    let rows = st
                        .query_map([], |r| r.get::<_, u32>(0))
                        .map_err(|e| storage(p, e))?;
                    rows.collect::<Result<_, _>>().map_err(|e| storage(p, e))?
                };
                let free = (0..g.max_uids).find(|u| taken.binary_search(u).is_err());
                let (uid, replaced) = match free {
                    Some(u) => (u, None),
                    None => {
                        // Replace the lowest-weight uid past immunity (ties: oldest, then lowest uid).
                        let cands = self.consensus(db)?;
                        let victim = cands
                            .into_iter()
                            .filter(|(_, _, reg, _)| reg.saturating_add(g.immunity_blocks) <= block)
                            .min_by(|a, b| {
                                a.3.total_cmp(&b.3).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0))
                            });
                        match victim {
                            Some((u, k, _, _)) => (u, Some(k)),
                            None => return Ok(Err(Rejection::Full(g.max_uids))),
                        }
                    }
                };
                if let Err(r) = self.burn_registration(db, &tx.signer)? {
                    return Ok(Err(r));
                }
                if replaced.is_some() {
                    db.execute("DELETE FROM uids WHERE uid = ?1", [uid])
                        .map_err(|e| storage(p, e))?;
                    db.execute("DELETE FROM commitments WHERE uid = ?1", [uid])
                        .map_err(|e| storage(p, e))?;
                    db.execute("DELETE FROM weights WHERE uid = ?1", [uid])
                        .map_err(|e| storage(p, e))?;
                }
                db.execute(
                    "INSERT INTO uids (uid, hotkey, registered_block) VALUES (?1, ?2, ?3)",
                    params![uid, &tx.signer.0[..], block],
                )
                .map_err(|e| storage(p, e))?;
                Receipt {
                    block,
                    uid: Some(uid),
                    replaced,
                }
            }
            TxBody::Commit {
                bucket_url,
                read_credentials,
            } => {
                let Some(uid) = Self::uid_of(db, p, &tx.signer)? else {
                    return Ok(Err(Rejection::NotRegistered));
                };
                db.execute(
                    "INSERT INTO commitments (uid, bucket_url, read_credentials, block) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(uid) DO UPDATE SET bucket_url = excluded.bucket_url,
                       read_credentials = excluded.read_credentials, block = excluded.block",
                    params![uid, bucket_url, read_credentials, block],
                )
                .map_err(|e| storage(p, e))?;
                Receipt {
                    block,
                    uid: Some(uid),
                    replaced: None,
                }
            }
            TxBody::Transfer { to, amount } => {
                if let Err(r) = Self::debit(db, p, &tx.signer, *amount)? {
                    return Ok(Err(r));
                }
                let sum = Self::balance_in(db, p, to)?.saturating_add(*amount);
                if sum > i64::MAX as u64 {
                    return Ok(Err(Rejection::Malformed(format!(
                        "the balance of {to} would be above {}",
                        i64::MAX
                    ))));
                }
                Self::set_balance(db, p, to, sum)?;
                Receipt {
                    block,
                    uid: Self::uid_of(db, p, &tx.signer)?,
                    replaced: None,
                }
            }
            TxBody::SetWeights { weights } => {
                if g.stake_of(&tx.signer) == 0 {
                    return Ok(Err(Rejection::NotValidator));
                }
                let mut seen = std::collections::BTreeSet::new();
                for &(u, _) in weights {
                    if u >= g.max_uids && u != BURN_UID {
                        return Ok(Err(Rejection::InvalidWeights(format!(
                            "uid {u} out of range (max uids {})",
                            g.max_uids
                        ))));
                    }
                    if !seen.insert(u) {
                        return Ok(Err(Rejection::InvalidWeights(format!(
                            "uid {u} listed twice"
                        ))));
                    }
                }
                db.execute(
                    "DELETE FROM weights WHERE validator = ?1",
                    [&tx.signer.0[..]],
                )
                .map_err(|e| storage(p, e))?;
                for &(u, w) in weights.iter().filter(|(_, w)| *w > 0) {
                    db.execute(
                        "INSERT INTO weights VALUES (?1, ?2, ?3)",
                        params![&tx.signer.0[..], u, w],
                    )
                    .map_err(|e| storage(p, e))?;
                }
                db.execute(
                    "INSERT INTO weights_set VALUES (?1, ?2) ON CONFLICT(validator) DO UPDATE SET block = excluded.block",
                    params![&tx.signer.0[..], block],
                )
                .map_err(|e| storage(p, e))?;
                // History for snapshots at past blocks ([`Chain::snapshot`]).
                let json = serde_json::to_string(weights).map_err(|e| storage(p, e))?;
                db.execute(
                    "INSERT INTO weights_log (validator, block, weights) VALUES (?1, ?2, ?3)",
                    params![&tx.signer.0[..], block, json],
                )
                .map_err(|e| storage(p, e))?;
                Receipt {
                    block,
                    uid: Self::uid_of(db, p, &tx.signer)?,
                    replaced: None,
                }
            }
        };
        Ok(Ok(receipt))
    }
}

impl Chain for Ledger {
    fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    fn block(&self) -> u64 {
        self.genesis.schedule().block_of_time(self.clock.now_ms())
    }

    fn balance(&self, key: &PublicKey) -> Result<u64, ChainError> {
        let conn = self.lock()?;
        Self::balance_in(&conn, &self.path, key)
    }

    fn next_nonce(&self, key: &PublicKey) -> Result<u64, ChainError> {
        let conn = self.lock()?;
        let last: Option<u64> = conn
            .query_row(
                "SELECT nonce FROM nonces WHERE hotkey = ?1",
                [&key.0[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| storage(&self.path, e))?;
        Ok(last.map(|n| n.saturating_add(1)).unwrap_or(1))
    }

    fn submit(&self, tx: &Transaction) -> Result<Receipt, ChainError> {
        tx.check()?;
        if tx.run_id != self.genesis.run_id {
            return Err(Rejection::WrongRun {
                expected: self.genesis.run_id.clone(),
                found: tx.run_id.clone(),
            }
            .into());
        }
        let mut conn = self.lock()?;
        let db = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| storage(&self.path, e))?;
        let block = self.seal(&db)?;
        match self.apply(&db, tx, block)? {
            Ok(receipt) => {
                db.execute(
                    "INSERT INTO txlog (block, signer, kind, outcome) VALUES (?1, ?2, ?3, 'ok')",
                    params![block, &tx.signer.0[..], tx.body.kind()],
                )
                .map_err(|e| storage(&self.path, e))?;
                db.commit().map_err(|e| storage(&self.path, e))?;
                Ok(receipt)
            }
            Err(rejection) => {
                db.rollback().map_err(|e| storage(&self.path, e))?;
                Err(rejection.into())
            }
        }
    }

    fn metagraph(&self) -> Result<Metagraph, ChainError> {
        let mut conn = self.lock()?;
        let p = &self.path;
        let block = self.block();
        // One read transaction: a consistent snapshot even while other processes write.
        let db = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| storage(p, e))?;
        let g = &self.genesis;
        let mut neurons = Vec::new();
        for (uid, key, registered_block, w) in self.consensus(&db)? {
            let commitment = db
                .query_row(
                    "SELECT bucket_url, read_credentials, block FROM commitments WHERE uid = ?1",
                    [uid],
                    |r| {
                        Ok(Commitment {
                            bucket_url: r.get(0)?,
                            read_credentials: r.get(1)?,
                            block: r.get(2)?,
                        })
                    },
                )
                .optional()
                .map_err(|e| storage(p, e))?;
            neurons.push(Neuron {
                uid,
                key,
                registered_block,
                immune: registered_block.saturating_add(g.immunity_blocks) > block,
                commitment,
                consensus_weight: w,
            });
        }
        let mut validators = Vec::new();
        for v in &g.validators {
            let last: Option<u64> = db
                .query_row(
                    "SELECT block FROM weights_set WHERE validator = ?1",
                    [&v.key.0[..]],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| storage(p, e))?;
            validators.push(ValidatorState {
                key: v.key,
                stake: v.stake,
                uid: Self::uid_of(&db, p, &v.key)?,
                last_weights_block: last,
                weights: self.weights_of(&db, &v.key)?,
            });
        }
        db.finish().map_err(|e| storage(p, e))?;
        Ok(Metagraph {
            run_id: g.run_id.clone(),
            block,
            window: g.schedule().window_of_block(block),
            max_uids: g.max_uids,
            neurons,
            validators,
        })
    }

    fn snapshot(&self, block: u64) -> Result<Snapshot, ChainError> {
        let mut conn = self.lock()?;
        let p = &self.path;
        // Under the write lock: a transaction either committed before this read or takes a
        // block at least the sealed one after it.
        let db = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| storage(p, e))?;
        self.seal(&db)?;
        let g = &self.genesis;
        let mut neurons: Vec<(u32, PublicKey, u64)> = Vec::new();
        {
            let mut st = db
                .prepare("SELECT uid, hotkey, registered_block FROM uids WHERE registered_block < ?1 ORDER BY uid")
                .map_err(|e| storage(p, e))?;
            let rows = st
                .query_map([block], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, u64>(2)?,
                    ))
                })
                .map_err(|e| storage(p, e))?;
            for r in rows {
                let (uid, key, reg) = r.map_err(|e| storage(p, e))?;
                neurons.push((uid, key_from_blob(p, key)?, reg));
            }
        }
        let registered_at: std::collections::BTreeMap<u32, u64> =
            neurons.iter().map(|n| (n.0, n.2)).collect();
        let uids: Vec<u32> = neurons.iter().map(|n| n.0).chain([BURN_UID]).collect();
        let mut rows = Vec::new();
        for v in &g.validators {
            let last: Option<(u64, String)> = db
                .query_row(
                    "SELECT block, weights FROM weights_log WHERE validator = ?1 AND block < ?2 ORDER BY block DESC, id DESC LIMIT 1",
                    params![&v.key.0[..], block],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| storage(p, e))?;
            let ws: Vec<(u32, u16)> = match last {
                Some((set_at, json)) => {
                    let all: Vec<(u32, u16)> = serde_json::from_str(&json)
                        .map_err(|e| storage(p, format!("weights log: {e}")))?;
                    // Weights set before a uid's current holder registered were for its old holder.
                    all.into_iter()
                        .filter(|(u, w)| {
                            *w > 0
                                && (*u == BURN_UID
                                    || registered_at.get(u).is_some_and(|&reg| reg <= set_at))
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            rows.push((v.stake, ws));
        }
        let mut commitments = std::collections::BTreeMap::new();
        {
            let mut st = db
                .prepare("SELECT uid, bucket_url, read_credentials, block FROM commitments")
                .map_err(|e| storage(p, e))?;
            let it = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        Commitment {
                            bucket_url: r.get(1)?,
                            read_credentials: r.get(2)?,
                            block: r.get(3)?,
                        },
                    ))
                })
                .map_err(|e| storage(p, e))?;
            for r in it {
                let (u, c) = r.map_err(|e| storage(p, e))?;
                commitments.insert(u, c);
            }
        }
        db.commit().map_err(|e| storage(p, e))?;
        let c = yuma_consensus(&uids, &rows, g.kappa);
        let burned = c.weights.last().copied().unwrap_or(0.0);
        let neurons = neurons
            .into_iter()
            .zip(c.weights)
            .map(|((uid, key, registered_block), w)| Neuron {
                uid,
                key,
                registered_block,
                immune: registered_block.saturating_add(g.immunity_blocks) > block,
                commitment: commitments.remove(&uid),
                consensus_weight: w,
            })
            .collect();
        Ok(Snapshot {
            block,
            neurons,
            burned,
            validators: g.validator_keys(),
        })
    }
}
