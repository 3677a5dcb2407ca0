//! Typed, versioned records over a sled tree.

use super::{StoreError, StoreResult};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;

/// A value kept in the store. `VERSION` is written in front of every encoded value; bump it
/// when the layout changes and teach `decode_version` to read the old one.
pub trait Record: Serialize + DeserializeOwned {
    const VERSION: u8;

    /// Reads a value written under an older `VERSION`. The default refuses, which is right
    /// until a record's layout first changes.
    fn decode_version(version: u8, body: &[u8]) -> Result<Self, String> {
        Err(format!(
            "no reader for record version {version} ({} bytes)",
            body.len()
        ))
    }
}

/// A sled tree whose values are all records of one type.
#[derive(Clone)]
pub struct TypedTree<T> {
    name: &'static str,
    tree: sled::Tree,
    _t: PhantomData<fn() -> T>,
}

impl<T: Record> TypedTree<T> {
    pub(super) fn new(name: &'static str, tree: sled::Tree) -> Self {
        TypedTree {
            name,
            tree,
            _t: PhantomData,
        }
    }

    fn encode(value: &T) -> Vec<u8> {
        let mut out = vec![T::VERSION];
        // Serializing plain data structs into a Vec cannot fail.
        serde_json::to_writer(&mut out, value).expect("record serializes");
        out
    }

    fn decode(&self, key: &[u8], raw: &[u8]) -> StoreResult<T> {
        let corrupt = |reason: String| StoreError::Corrupt {
            tree: self.name.to_string(),
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        let (&version, body) = raw.split_first().ok_or_else(|| corrupt("empty value".into()))?;
        if version == T::VERSION {
            serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))
        } else {
            T::decode_version(version, body).map_err(corrupt)
        }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> StoreResult<Option<T>> {
        let key = key.as_ref();
        match self.tree.get(key)? {
            Some(raw) => self.decode(key, &raw).map(Some),
            None => Ok(None),
        }
    }

    pub fn put(&self, key: impl AsRef<[u8]>, value: &T) -> StoreResult<()> {
        self.tree.insert(key.as_ref(), Self::encode(value))?;
        Ok(())
    }

    /// Atomically replaces the record at `key` with `f(current)`. `f` may run more than once
    /// when another writer races it, so it must be a pure function of its input. A current
    /// value that does not decode (damaged, or written by a newer ballast) is left as it is
    /// and reported: it is never overwritten unseen.
    pub fn update(&self, key: impl AsRef<[u8]>, f: impl Fn(Option<T>) -> T) -> StoreResult<()> {
        let key = key.as_ref();
        let mut unreadable = None;
        self.tree.fetch_and_update(key, |old| match old {
            None => Some(Self::encode(&f(None))),
            Some(raw) => match self.decode(key, raw) {
                Ok(current) => {
                    unreadable = None;
                    Some(Self::encode(&f(Some(current))))
                }
                Err(e) => {
                    unreadable = Some(e);
                    Some(raw.to_vec())
                }
            },
        })?;
        match unreadable {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Removes the record at `key`, returning it. One that does not decode is kept, and
    /// the error says why: a caller cannot remove what it was unable to look at.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> StoreResult<Option<T>> {
        let key = key.as_ref();
        match self.tree.get(key)? {
            None => Ok(None),
            Some(raw) => {
                let value = self.decode(key, &raw)?;
                self.tree.remove(key)?;
                Ok(Some(value))
            }
        }
    }

    /// Removes the record at `key` whatever it holds, for records that are disposable
    /// (expired plans) and may have been written by another version.
    pub(crate) fn discard(&self, key: impl AsRef<[u8]>) -> StoreResult<()> {
        self.tree.remove(key.as_ref())?;
        Ok(())
    }

    /// Keys of every record, readable or not.
    pub fn keys(&self) -> impl Iterator<Item = StoreResult<Vec<u8>>> + '_ {
        self.tree.iter().keys().map(|k| Ok(k?.to_vec()))
    }

    /// Every record in key order. A record that cannot be decoded is returned as an error
    /// in its place instead of being skipped, so nothing a user stored silently vanishes.
    pub fn iter(&self) -> impl Iterator<Item = StoreResult<(Vec<u8>, T)>> + '_ {
        self.tree.iter().map(move |item| {
            let (k, v) = item?;
            let value = self.decode(&k, &v)?;
            Ok((k.to_vec(), value))
        })
    }

    /// Like [`Self::iter`], but a record that does not decode (damaged, or written by a
    /// newer ballast) is handed to `skipped` and passed over, left in place untouched; store
    /// failures still end the iteration as errors. Only for trees that hold no money: a
    /// hold invoice or a rebalance preimage must never be skipped.
    pub(crate) fn iter_readable<'a>(
        &'a self,
        mut skipped: impl FnMut(StoreError) + 'a,
    ) -> impl Iterator<Item = StoreResult<(Vec<u8>, T)>> + 'a {
        self.iter().filter_map(move |item| match item {
            Err(e @ StoreError::Corrupt { .. }) => {
                skipped(e);
                None
            }
            other => Some(other),
        })
    }

    /// The record at `key`, or `None` with the reason handed to `skipped` when it does not
    /// decode (see [`Self::iter_readable`]).
    pub(crate) fn get_readable(
        &self,
        key: impl AsRef<[u8]>,
        skipped: impl FnOnce(StoreError),
    ) -> StoreResult<Option<T>> {
        match self.get(key) {
            Err(e @ StoreError::Corrupt { .. }) => {
                skipped(e);
                Ok(None)
            }
            other => other,
        }
    }

    /// Every record in reverse key order (newest first for time-prefixed keys).
    pub(crate) fn iter_rev(&self) -> impl Iterator<Item = StoreResult<(Vec<u8>, T)>> + '_ {
        self.tree.iter().rev().map(move |item| {
            let (k, v) = item?;
            let value = self.decode(&k, &v)?;
            Ok((k.to_vec(), value))
        })
    }

    /// Records whose keys fall in `range`, in key order (errors as in [`Self::iter`]).
    pub fn range<K, R>(&self, range: R) -> impl DoubleEndedIterator<Item = StoreResult<(Vec<u8>, T)>> + '_
    where
        K: AsRef<[u8]>,
        R: std::ops::RangeBounds<K>,
    {
        self.tree.range(range).map(move |item| {
            let (k, v) = item?;
            let value = self.decode(&k, &v)?;
            Ok((k.to_vec(), value))
        })
    }

    /// Records whose keys start with `prefix`, in key order (errors as in [`Self::iter`]).
    pub(crate) fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = StoreResult<(Vec<u8>, T)>> + '_ {
        self.tree.scan_prefix(prefix).map(move |item| {
            let (k, v) = item?;
            let value = self.decode(&k, &v)?;
            Ok((k.to_vec(), value))
        })
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        amount_msat: u64,
        note: String,
    }

    impl Record for V2 {
        const VERSION: u8 = 2;
        fn decode_version(version: u8, body: &[u8]) -> Result<Self, String> {
            #[derive(Deserialize)]
            struct V1 {
                amount_msat: u64,
            }
            match version {
                1 => {
                    let old: V1 = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                    Ok(V2 {
                        amount_msat: old.amount_msat,
                        note: String::new(),
                    })
                }
                v => Err(format!("unknown version {v}")),
            }
        }
    }

    #[test]
    fn old_record_versions_are_read_and_garbage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 1).unwrap();
        let t: TypedTree<V2> = store.tree("things").unwrap();
        t.put(
            "new",
            &V2 {
                amount_msat: 5,
                note: "x".into(),
            },
        )
        .unwrap();
        t.tree
            .insert("old", [&[1u8][..], br#"{"amount_msat":7}"#].concat())
            .unwrap();
        t.tree.insert("bad", vec![9u8, b'{']).unwrap();
        assert_eq!(t.get("old").unwrap().unwrap().amount_msat, 7);
        assert_eq!(t.get("new").unwrap().unwrap().note, "x");
        assert!(matches!(t.get("bad"), Err(StoreError::Corrupt { .. })));
        assert_eq!(t.iter().filter(|r| r.is_err()).count(), 1);
        assert_eq!(t.len(), 3);
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V3 {
        amount_msat: u64,
    }

    impl Record for V3 {
        const VERSION: u8 = 3;
    }

    #[test]
    fn a_record_this_version_cannot_read_is_never_overwritten_or_removed_unseen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 1).unwrap();
        // Written by a newer ballast.
        let newer: TypedTree<V3> = store.tree("things").unwrap();
        newer.put("k", &V3 { amount_msat: 7 }).unwrap();
        let t: TypedTree<V2> = store.tree("things").unwrap();
        let r = t.update("k", |_| V2 {
            amount_msat: 1,
            note: "clobber".into(),
        });
        assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
        assert!(t.remove("k").is_err());
        assert_eq!(newer.get("k").unwrap(), Some(V3 { amount_msat: 7 }));
        // What is disposable can still be dropped on purpose.
        t.discard("k").unwrap();
        assert_eq!(newer.get("k").unwrap(), None);
        // And an absent record is created as before.
        t.update("n", |cur| {
            assert!(cur.is_none());
            V2 {
                amount_msat: 2,
                note: String::new(),
            }
        })
        .unwrap();
        assert_eq!(t.get("n").unwrap().unwrap().amount_msat, 2);
    }
}
