//! Store schema migrations, applied in order when an older store is opened.
//!
//! When `SCHEMA_VERSION` is bumped, the step from the previous version gets an arm in
//! `step`; a store that needs a step this build lacks is refused instead of being read
//! with the wrong layout. The schema is bumped whenever any record's `VERSION` goes up, so
//! that an older build refuses a store it could only half read (and might overwrite).

use super::{StoreError, StoreResult};

/// Brings a store from schema `from` up to `to`, one version at a time.
pub(super) fn run(db: &sled::Db, from: u32, to: u32) -> StoreResult<()> {
    for version in from..to {
        step(db, version)?;
    }
    Ok(())
}

/// Migrates from `version` to `version + 1`.
fn step(_db: &sled::Db, version: u32) -> StoreResult<()> {
    match version {
        // 1 → 2: the monitor's config record went to version 2. Records carry their own
        // version and are upgraded as they are read, so nothing is rewritten here; the bump
        // only keeps builds that know schema 1 alone from opening the store.
        1 => Ok(()),
        _ => Err(StoreError::Corrupt {
            tree: "meta".into(),
            key: "schema_version".into(),
            reason: format!("no migration from schema {version} to {}", version + 1),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_step_refuses_instead_of_guessing() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        assert!(run(&db, 1, 1).is_ok());
        assert!(run(&db, 1, 2).is_ok());
        assert!(matches!(run(&db, 0, 1), Err(StoreError::Corrupt { .. })));
    }
}
