//! The only module that touches sled.
//!
//! Every value is a versioned record: one leading byte says which layout of the record the
//! rest (JSON) is in, so a later ballast can read what an earlier one wrote and migrate it.
//! The database as a whole carries a schema version in the `meta` tree; opening a store
//! written by a newer ballast is refused rather than risk misreading someone's money state.

mod migrate;
mod typed;

pub use typed::{Record, TypedTree};

use serde::{Deserialize, Serialize};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The layout of the whole store this build writes. Bump it and add a step in
/// `migrate.rs` whenever a tree or record layout changes incompatibly.
pub(crate) const SCHEMA_VERSION: u32 = 2;

const META_TREE: &str = "meta";
const KEY_SCHEMA: &[u8] = b"schema_version";
const KEY_INFO: &[u8] = b"info";
const KEY_TIP: &[u8] = b"tip";
const LOCK_RETRIES: u32 = 20;
const LOCK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path} is locked by another process (is another ballast or lightningd using it?)")]
    Locked { path: PathBuf },
    #[error("cannot open store at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store at {path} has schema version {found}, newer than this ballast understands ({supported}); refusing to touch it")]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("store record {tree}/{key} is unreadable: {reason}")]
    Corrupt {
        tree: String,
        key: String,
        reason: String,
    },
    #[error("store I/O failed: {0}")]
    Io(#[from] sled::Error),
}

pub(crate) type StoreResult<T> = Result<T, StoreError>;

/// Facts about the store itself, kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Unix seconds when this store was first created.
    pub created_at: u64,
    /// How many times a plugin process has opened it.
    pub starts: u64,
}

impl Record for StoreInfo {
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ChainTip {
    height: u32,
}

impl Record for ChainTip {
    const VERSION: u8 = 1;
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    meta: TypedTree<StoreInfo>,
    tip: TypedTree<ChainTip>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, private to the current user, and
    /// brings its schema up to date.
    pub fn open(path: &Path, now_unix: u64) -> StoreResult<Store> {
        // Files sled creates later (snapshots, blobs) must be private too, not just the ones
        // that exist now, so restrict the process umask rather than chmod after the fact.
        // SAFETY: umask only swaps the process file-mode mask; it cannot fail.
        unsafe {
            libc::umask(0o077);
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(open_err)?;
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if !meta.is_dir() {
            return Err(open_err(std::io::Error::other("not a directory")));
        }
        // A store made by an older build (or by hand) may be world-readable: tighten it.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(open_err)?;

        // A store just closed may stay locked for a moment while sled's background flusher
        // winds down (a plugin restarted at once, or a reopen in the same process), so a
        // lock is retried briefly before it counts as held by someone else.
        let mut tries = 0;
        let db = loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => break db,
                Err(e) => match classify_open_error(path, e) {
                    StoreError::Locked { .. } if tries < LOCK_RETRIES => {
                        tries += 1;
                        std::thread::sleep(LOCK_RETRY_DELAY);
                    }
                    other => return Err(other),
                },
            }
        };
        tighten_file_modes(path);

        let meta_tree = db.open_tree(META_TREE)?;
        let store = Store {
            path: path.to_path_buf(),
            meta: TypedTree::new(META_TREE, meta_tree.clone()),
            tip: TypedTree::new(META_TREE, meta_tree),
            db,
        };
        store.check_schema(now_unix)?;
        Ok(store)
    }

    /// A store that lives as long as the value and is never read back (sled's temporary
    /// mode), for `ballast simulate`: the services run on it as they do on a real one.
    pub fn temporary() -> StoreResult<Store> {
        let db = sled::Config::new().temporary(true).open()?;
        let meta_tree = db.open_tree(META_TREE)?;
        let store = Store {
            path: PathBuf::new(),
            meta: TypedTree::new(META_TREE, meta_tree.clone()),
            tip: TypedTree::new(META_TREE, meta_tree),
            db,
        };
        store.check_schema(0)?;
        Ok(store)
    }

    fn check_schema(&self, now_unix: u64) -> StoreResult<()> {
        let meta = self.db.open_tree(META_TREE)?;
        match meta.get(KEY_SCHEMA)? {
            None => {
                // A brand-new store: stamp it before anything else is written.
                meta.insert(KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                self.meta.put(
                    KEY_INFO,
                    &StoreInfo {
                        created_at: now_unix,
                        starts: 0,
                    },
                )?;
                self.db.flush()?;
                Ok(())
            }
            Some(raw) => {
                let found = decode_schema(&raw).ok_or_else(|| StoreError::Corrupt {
                    tree: META_TREE.into(),
                    key: "schema_version".into(),
                    reason: format!("expected 4 bytes, found {}", raw.len()),
                })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: self.path.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < SCHEMA_VERSION {
                    migrate::run(&self.db, found, SCHEMA_VERSION)?;
                    meta.insert(KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                    self.db.flush()?;
                }
                Ok(())
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> StoreResult<u32> {
        let meta = self.db.open_tree(META_TREE)?;
        Ok(meta
            .get(KEY_SCHEMA)?
            .and_then(|raw| decode_schema(&raw))
            .unwrap_or(0))
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Opens a feature's own tree of typed records.
    pub fn tree<T: Record>(&self, name: &'static str) -> StoreResult<TypedTree<T>> {
        Ok(TypedTree::new(name, self.db.open_tree(name)?))
    }

    pub fn info(&self) -> StoreResult<StoreInfo> {
        self.meta.get(KEY_INFO)?.ok_or_else(|| StoreError::Corrupt {
            tree: META_TREE.into(),
            key: "info".into(),
            reason: "missing".into(),
        })
    }

    /// Counts one more start and makes it durable; returns the updated info.
    pub(crate) fn record_start(&self) -> StoreResult<StoreInfo> {
        let mut info = self.info()?;
        info.starts += 1;
        self.meta.put(KEY_INFO, &info)?;
        self.flush()?;
        Ok(info)
    }

    pub fn tip(&self) -> StoreResult<Option<u32>> {
        Ok(self.tip.get(KEY_TIP)?.map(|t| t.height))
    }

    /// Records the chain tip. Not flushed here: a lost tip is re-learned from lightningd, so
    /// it rides along with the next flush instead of costing a sync per block.
    pub(crate) fn set_tip(&self, height: u32) -> StoreResult<()> {
        // Only forward: notifications may be handled out of order.
        self.tip.update(KEY_TIP, |cur| ChainTip {
            height: cur.map_or(height, |c| c.height.max(height)),
        })
    }

    /// Makes every write so far durable. Call before acknowledging anything money-relevant.
    pub fn flush(&self) -> StoreResult<usize> {
        Ok(self.db.flush()?)
    }
}

fn decode_schema(raw: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(raw.try_into().ok()?))
}

fn classify_open_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io) => {
            // sled takes an exclusive flock on its db file; a second opener gets
            // EWOULDBLOCK wrapped in a message, not a distinct error variant.
            let text = io.to_string();
            if io.kind() == std::io::ErrorKind::WouldBlock || text.contains("could not acquire lock") {
                StoreError::Locked {
                    path: path.to_path_buf(),
                }
            } else {
                StoreError::Open {
                    path: path.to_path_buf(),
                    source: io,
                }
            }
        }
        other => StoreError::Open {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

fn tighten_file_modes(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        let mode = if p.is_dir() { 0o700 } else { 0o600 };
        // Best effort: a file we cannot chmod is one we do not own, and sled already
        // opened it successfully, so there is nothing better to do than leave it.
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
        if p.is_dir() {
            tighten_file_modes(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn fresh_store_is_stamped_private_and_counts_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ballast");
        {
            let s = Store::open(&path, 1_000).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            assert_eq!(s.record_start().unwrap().starts, 1);
            s.set_tip(812_345).unwrap();
            s.flush().unwrap();
        }
        let s = Store::open(&path, 2_000).unwrap();
        let info = s.record_start().unwrap();
        assert_eq!(
            info,
            StoreInfo {
                created_at: 1_000,
                starts: 2
            }
        );
        assert_eq!(s.tip().unwrap(), Some(812_345));
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        for e in std::fs::read_dir(&path).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_file() {
                assert_eq!(m.mode() & 0o077, 0, "{:?} is readable by others", e.path());
            }
        }
    }

    #[test]
    fn second_opener_in_another_process_is_reported_as_locked() {
        // flock is per open file description, so a second open in this process would
        // also conflict; that is what lets us test the lock without a second process.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ballast");
        let _first = Store::open(&path, 1).unwrap();
        match Store::open(&path, 1) {
            Err(StoreError::Locked { .. }) => {}
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("second open of a locked store succeeded"),
        }
    }

    #[test]
    fn newer_schema_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ballast");
        {
            let s = Store::open(&path, 1).unwrap();
            let meta = s.db.open_tree(META_TREE).unwrap();
            meta.insert(KEY_SCHEMA, &(SCHEMA_VERSION + 5).to_be_bytes())
                .unwrap();
            s.flush().unwrap();
        }
        match Store::open(&path, 1) {
            Err(StoreError::NewerSchema { found, .. }) => assert_eq!(found, SCHEMA_VERSION + 5),
            Err(other) => panic!("expected NewerSchema, got {other}"),
            Ok(_) => panic!("opened a store from the future"),
        }
    }

    #[test]
    fn a_schema_1_store_is_migrated_and_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ballast");
        {
            let s = Store::open(&path, 1).unwrap();
            s.set_tip(123).unwrap();
            let meta = s.db.open_tree(META_TREE).unwrap();
            meta.insert(KEY_SCHEMA, &1u32.to_be_bytes()).unwrap();
            s.flush().unwrap();
        }
        let s = Store::open(&path, 2).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.tip().unwrap(), Some(123));
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ballast");
        std::fs::write(&path, b"not a store").unwrap();
        assert!(matches!(Store::open(&path, 1), Err(StoreError::Open { .. })));
    }
}
