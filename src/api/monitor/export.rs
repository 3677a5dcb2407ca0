//! `monitor-export`: balance history or the latest snapshots, as JSON or CSV, to a new
//! private file in the files directory.

use super::errors::{file_error, internal, service_error, unknown_channel};
use super::rounds::ensure_snapshot;
use super::{blocking, file_param, RpcError, SCID_WANT};
use crate::api::now_unix;
use crate::api::params::Params;
use crate::api::state::AppState;
use crate::engine::monitor::export::{
    history_to_csv, snapshots_to_csv, HISTORY_CSV_HEADER, SNAPSHOT_CSV_HEADER,
};
use crate::engine::monitor::{ChannelSnapshot, ExportFormat};
use crate::types::Scid;
use serde_json::{json, Value};
use std::path::PathBuf;

pub const EXPORT: &str = "monitor-export";

pub async fn export(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(
            EXPORT,
            &params,
            &["path", "format", "data", "scid", "overwrite"],
            1,
        )?;
        let path = file_param(&s, prm.required(prm.str("path")?, "path")?)?;
        let format: ExportFormat = prm.parsed("format", "json or csv")?.unwrap_or_default();
        let history = match prm.str("data")? {
            None | Some("history") => true,
            Some("snapshots") => false,
            Some(other) => {
                return Err(RpcError::invalid(format!(
                    "{EXPORT}: 'data' must be 'history' or 'snapshots', got '{}'",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        let only: Option<Scid> = prm.parsed("scid", SCID_WANT)?;
        let overwrite = prm.bool("overwrite")?.unwrap_or(false);
        if !history {
            ensure_snapshot(&p).await?;
        }
        if let Some(scid) = only.filter(|c| !s.monitor.knows_channel(*c)) {
            let svc = s.monitor.clone();
            if blocking(move || svc.channel_history(scid)).await?.is_empty() {
                return Err(unknown_channel(EXPORT, scid));
            }
        }
        let svc = s.monitor.clone();
        let files = s.files.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(PathBuf, u64, u64), RpcError> {
            let scids = match only {
                Some(c) => vec![c],
                None => svc.channels_with_history().map_err(service_error)?,
            };
            let snaps: Vec<ChannelSnapshot> = svc
                .snapshots()
                .into_iter()
                .filter(|sn| only.is_none_or(|c| sn.scid() == Some(c)))
                .collect();
            let mut records = 0u64;
            let (written, bytes) = files
                .write(&path, overwrite, now_unix(), |w| {
                    let io = |e: String| std::io::Error::other(e);
                    match (history, format) {
                        (true, ExportFormat::Csv) => {
                            writeln!(w, "{HISTORY_CSV_HEADER}")?;
                            // Channel by channel, so memory stays one channel's history.
                            for scid in &scids {
                                let pts = svc.channel_history(*scid).map_err(|e| io(e.to_string()))?;
                                records += pts.len() as u64;
                                let csv = history_to_csv(&pts);
                                w.write_all(csv.split_once('\n').map_or("", |(_, rest)| rest).as_bytes())?;
                            }
                        }
                        (true, ExportFormat::Json) => {
                            w.write_all(b"[")?;
                            for scid in &scids {
                                for pt in svc.channel_history(*scid).map_err(|e| io(e.to_string()))? {
                                    if records > 0 {
                                        w.write_all(b",")?;
                                    }
                                    w.write_all(b"\n")?;
                                    serde_json::to_writer(&mut *w, &pt)?;
                                    records += 1;
                                }
                            }
                            w.write_all(b"\n]\n")?;
                        }
                        (false, ExportFormat::Csv) => {
                            records = snaps.len() as u64;
                            let csv = snapshots_to_csv(&snaps);
                            debug_assert!(csv.starts_with(SNAPSHOT_CSV_HEADER));
                            w.write_all(csv.as_bytes())?;
                        }
                        (false, ExportFormat::Json) => {
                            records = snaps.len() as u64;
                            serde_json::to_writer_pretty(&mut *w, &snaps)?;
                            w.write_all(b"\n")?;
                        }
                    }
                    Ok(())
                })
                .map_err(file_error)?;
            Ok((written, bytes, records))
        })
        .await
        .map_err(internal)??;
        log::info!("monitor export written to {}", result.0.display());
        Ok(json!({
            "path": result.0.display().to_string(),
            "format": format.to_string(),
            "data": if history { "history" } else { "snapshots" },
            "records": result.2,
            "bytes": result.1,
        }))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_files_refuse_to_overwrite_unless_asked() {
        use crate::service::files::write_private;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        let n = write_private(&p, false, |w| w.write_all(b"one")).unwrap();
        assert_eq!(n, 3);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let e = write_private(&p, false, |w| w.write_all(b"two")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        write_private(&p, true, |w| w.write_all(b"three")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three");
        // A failing writer leaves nothing behind.
        let q = dir.path().join("never");
        assert!(write_private(&q, false, |_| Err(std::io::Error::other("boom"))).is_err());
        assert!(!q.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Symlinks are replaced, not followed.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(write_private(&link, false, |w| w.write_all(b"x")).is_err());
        write_private(&link, true, |w| w.write_all(b"x")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
