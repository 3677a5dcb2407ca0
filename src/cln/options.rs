//! The plugin's `ballast-*` options, as lightningd shows them in `listconfigs`.

use cln_plugin::options::{ConfigOption, DefaultStringConfigOption};
use std::path::{Path, PathBuf};

pub const DB_PATH: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-db-path",
    "ballast",
    "Directory of ballast's store; a relative path is taken from <lightning-dir>/<network>",
);

/// Resolves the store path the way an operator reads the option: relative to the
/// network's lightning-dir, which lightningd passes to plugins (and also makes their cwd).
pub fn resolve_db_path(lightning_dir: &str, option: &str) -> PathBuf {
    let p = Path::new(option);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(lightning_dir).join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_live_under_the_lightning_dir() {
        assert_eq!(resolve_db_path("/ln/regtest", "ballast"), PathBuf::from("/ln/regtest/ballast"));
        assert_eq!(resolve_db_path("/ln/regtest", "/var/lib/b"), PathBuf::from("/var/lib/b"));
    }
}
