//! The one directory ballast writes files into (`ballast-files-dir`), and the record of
//! the files it wrote there.
//!
//! Methods that write files (`monitor-export`, `monitor-report`) may be granted to a
//! dashboard by a rune. If they could name any path, `overwrite=true` would let that
//! dashboard replace `hsm_secret` or the node's database. So a path is always relative to
//! this directory and may not leave it (no absolute paths, no `..` above it, no symlinked
//! subdirectory pointing elsewhere), and an existing file is only replaced when ballast
//! wrote it: its device, inode, size and change time must be the ones recorded when ballast
//! wrote it. (An inode alone is not enough: a file deleted and created again often gets
//! the same number back. Nobody can set a change time, so a file put there by anyone else
//! does not match.)

use crate::store::{Record, Store, StoreError, TypedTree};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

const TREE: &str = "files_written";

/// A file ballast wrote: what it must still be for ballast to replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct WrittenFile {
    dev: u64,
    ino: u64,
    len: u64,
    ctime: i64,
    ctime_nsec: i64,
    written_at: u64,
}

impl WrittenFile {
    fn of(m: &std::fs::Metadata, written_at: u64) -> WrittenFile {
        WrittenFile {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
            written_at,
        }
    }

    /// Still the very file ballast wrote (a regular file, not a symlink put in its place).
    fn is(&self, m: &std::fs::Metadata) -> bool {
        m.file_type().is_file() && WrittenFile::of(m, self.written_at) == *self
    }
}

impl Record for WrittenFile {
    const VERSION: u8 = 1;
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("path must not be empty")]
    Empty,
    #[error("'{0}' is absolute: give a path inside {1}")]
    Absolute(String, String),
    #[error("'{0}' leaves {1}: give a path inside it")]
    Escapes(String, String),
    #[error("{0} exists; pass overwrite=true to replace it")]
    Exists(String),
    #[error("{0} exists and was not written by ballast: it is left untouched")]
    NotOurs(String),
    #[error("cannot write {0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `rel` as a path inside the directory, with `.` and inner `..` resolved lexically.
/// Refuses absolute paths, an empty path, and any `..` that climbs above the directory.
pub(crate) fn confine(rel: &str, shown_root: &str) -> Result<PathBuf, FileError> {
    if rel.is_empty() {
        return Err(FileError::Empty);
    }
    let p = Path::new(rel);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err(FileError::Absolute(rel.into(), shown_root.into()))
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(FileError::Escapes(rel.into(), shown_root.into()));
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(FileError::Empty);
    }
    Ok(out)
}

/// The files directory and what ballast wrote in it.
pub struct FilesDir {
    root: PathBuf,
    written: TypedTree<WrittenFile>,
}

impl FilesDir {
    pub fn open(store: &Store, root: PathBuf) -> Result<FilesDir, StoreError> {
        Ok(FilesDir {
            root,
            written: store.tree(TREE)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn shown(&self) -> String {
        self.root.display().to_string()
    }

    /// Where a file named `rel` is read from: inside the directory, or refused.
    pub(crate) fn path_for_reading(&self, rel: &str) -> Result<PathBuf, FileError> {
        Ok(self.root.join(confine(rel, &self.shown())?))
    }

    /// Creates the directory (0700) and `rel`'s parent directories in it, and checks that
    /// the parent, symlinks followed, is still inside it. Returns the file's full path.
    fn prepare(&self, rel: &Path) -> Result<PathBuf, FileError> {
        let io = |p: &Path, e| FileError::Io(p.display().to_string(), e);
        let full = self.root.join(rel);
        let parent = full.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(|e| io(&parent, e))?;
        let root = self.root.canonicalize().map_err(|e| io(&self.root, e))?;
        let real_parent = parent.canonicalize().map_err(|e| io(&parent, e))?;
        if !real_parent.starts_with(&root) {
            return Err(FileError::Escapes(rel.display().to_string(), self.shown()));
        }
        Ok(full)
    }

    /// Writes `rel` inside the directory (mode 0600) and returns its path and size. An
    /// existing file is refused unless `overwrite`, and even then unless ballast wrote it.
    pub fn write(
        &self,
        rel: &str,
        overwrite: bool,
        now: u64,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(PathBuf, u64), FileError> {
        let rel = confine(rel, &self.shown())?;
        let full = self.prepare(&rel)?;
        let key = full.to_string_lossy().into_owned();
        let shown = full.display().to_string();
        match std::fs::symlink_metadata(&full) {
            Ok(_) if !overwrite => return Err(FileError::Exists(shown)),
            Ok(m) => {
                let ours = self.written.get(key.as_bytes())?.is_some_and(|w| w.is(&m));
                if !ours {
                    return Err(FileError::NotOurs(shown));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FileError::Io(shown, e)),
        }
        let bytes = write_private(&full, overwrite, fill).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                FileError::Exists(shown.clone())
            } else {
                FileError::Io(shown.clone(), e)
            }
        })?;
        let m = std::fs::symlink_metadata(&full).map_err(|e| FileError::Io(shown.clone(), e))?;
        self.written.put(key.as_bytes(), &WrittenFile::of(&m, now))?;
        Ok((full, bytes))
    }
}

/// Writes a file readable by its owner only (0600). Without `overwrite`, an existing path
/// (file, directory or symlink) is refused. With it, the content goes to a new file beside
/// it that is then renamed over it, so a reader never sees half a file and a symlink at
/// `path` is replaced, not followed.
pub(crate) fn write_private(
    path: &Path,
    overwrite: bool,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
    };
    let target = if overwrite {
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"))?;
        let mut tmp = name.to_os_string();
        let mut raw = [0u8; 8];
        getrandom::getrandom(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
        tmp.push(format!(".ballast-tmp-{}", hex::encode(raw)));
        path.with_file_name(tmp)
    } else {
        path.to_path_buf()
    };
    let file = open(&target)?;
    let written = (|| {
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        file.metadata().map(|m| m.len())
    })();
    let done = written.and_then(|n| {
        if overwrite {
            std::fs::rename(&target, path)?;
        }
        Ok(n)
    });
    if done.is_err() {
        // Do not leave a half-written file behind.
        let _ = std::fs::remove_file(&target);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, FilesDir) {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store"), 0).unwrap();
        let f = FilesDir::open(&store, t.path().join("net").join("ballast-files")).unwrap();
        (t, f)
    }

    #[test]
    fn paths_stay_inside_the_directory() {
        assert_eq!(
            confine("a/./b/../c.json", "D").unwrap(),
            PathBuf::from("a/c.json")
        );
        assert!(matches!(
            confine("/etc/passwd", "D"),
            Err(FileError::Absolute(..))
        ));
        assert!(matches!(
            confine("../hsm_secret", "D"),
            Err(FileError::Escapes(..))
        ));
        assert!(matches!(confine("a/../../x", "D"), Err(FileError::Escapes(..))));
        assert!(matches!(confine("", "D"), Err(FileError::Empty)));
        assert!(matches!(confine("a/..", "D"), Err(FileError::Empty)));
    }

    #[test]
    fn only_files_ballast_wrote_are_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let (t, f) = dir();
        let (p, n) = f.write("r/out.json", false, 1, |w| w.write_all(b"one")).unwrap();
        assert_eq!(n, 3);
        assert!(p.starts_with(f.root()));
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(
            f.write("r/out.json", false, 2, |w| w.write_all(b"two")),
            Err(FileError::Exists(_))
        ));
        f.write("r/out.json", true, 3, |w| w.write_all(b"three")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three");
        // Replaced twice: the record follows the new inode each time.
        f.write("r/out.json", true, 4, |w| w.write_all(b"four")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "four");

        // Someone else's file at a path ballast once wrote: untouched.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "theirs").unwrap();
        assert!(matches!(
            f.write("r/out.json", true, 5, |w| w.write_all(b"x")),
            Err(FileError::NotOurs(_))
        ));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "theirs");
        let other = f.root().join("theirs.txt");
        std::fs::write(&other, "keep").unwrap();
        assert!(matches!(
            f.write("theirs.txt", true, 6, |w| w.write_all(b"x")),
            Err(FileError::NotOurs(_))
        ));
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep");

        // A symlink out of the directory is neither followed nor replaced.
        let victim = t.path().join("hsm_secret");
        std::fs::write(&victim, "secret").unwrap();
        std::os::unix::fs::symlink(&victim, f.root().join("link")).unwrap();
        assert!(f.write("link", true, 7, |w| w.write_all(b"x")).is_err());
        assert!(f.write("link", false, 7, |w| w.write_all(b"x")).is_err());
        std::os::unix::fs::symlink(t.path(), f.root().join("up")).unwrap();
        assert!(matches!(
            f.write("up/new.json", false, 8, |w| w.write_all(b"x")),
            Err(FileError::Escapes(..))
        ));
        assert!(!t.path().join("new.json").exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        assert!(matches!(
            f.write("../hsm_secret", true, 9, |w| w.write_all(b"x")),
            Err(FileError::Escapes(..))
        ));
        assert!(matches!(
            f.write(victim.to_str().unwrap(), true, 9, |w| w.write_all(b"x")),
            Err(FileError::Absolute(..))
        ));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
    }

    #[test]
    fn a_failing_writer_leaves_nothing_behind() {
        let (_t, f) = dir();
        assert!(f
            .write("never", false, 1, |_| Err(std::io::Error::other("boom")))
            .is_err());
        assert!(!f.root().join("never").exists());
    }
}
