//! History and snapshots as CSV or JSON text, plus parsers so exports can be read back (and
//! round-trip tested). Writing the file is the caller's business.
//!
//! No exported field can contain a comma, quote or newline (numbers, scids, hex node ids and
//! fixed state names), so the CSV needs no quoting and the parser can stay strict.

use super::history::HistoryPoint;
use super::snapshot::{parse_state, state_name, ChannelSnapshot};
use crate::types::Msat;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::{self, Write};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("unknown export format '{0}': expected json or csv")]
    Format(String),
    #[error("CSV line {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error("JSON: {0}")]
    Json(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    #[default]
    Json,
    Csv,
}

impl FromStr for ExportFormat {
    type Err = ExportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(ExportFormat::Json),
            "csv" => Ok(ExportFormat::Csv),
            _ => Err(ExportError::Format(s.chars().take(40).collect())),
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
        })
    }
}

pub(crate) const HISTORY_CSV_HEADER: &str =
    "scid,bucket_secs,start,samples,local_avg_msat,local_min_msat,local_max_msat,capacity_msat";

pub(crate) const SNAPSHOT_CSV_HEADER: &str =
    "channel,peer,state,peer_connected,capacity_msat,local_msat,remote_msat,\
spendable_msat,receivable_msat,htlcs_in,htlcs_out,htlc_in_msat,htlc_out_msat,min_expiry_blocks,height,time";

#[cfg(test)]
pub(crate) fn export_history(points: &[HistoryPoint], format: ExportFormat) -> Result<String, ExportError> {
    match format {
        ExportFormat::Json => to_json(points),
        ExportFormat::Csv => Ok(history_to_csv(points)),
    }
}

pub fn import_history(text: &str, format: ExportFormat) -> Result<Vec<HistoryPoint>, ExportError> {
    match format {
        ExportFormat::Json => from_json(text),
        ExportFormat::Csv => history_from_csv(text),
    }
}

#[cfg(test)]
pub(crate) fn export_snapshots(
    snaps: &[ChannelSnapshot],
    format: ExportFormat,
) -> Result<String, ExportError> {
    match format {
        ExportFormat::Json => to_json(snaps),
        ExportFormat::Csv => Ok(snapshots_to_csv(snaps)),
    }
}

pub fn import_snapshots(text: &str, format: ExportFormat) -> Result<Vec<ChannelSnapshot>, ExportError> {
    match format {
        ExportFormat::Json => from_json(text),
        ExportFormat::Csv => snapshots_from_csv(text),
    }
}

pub fn to_json<T: Serialize>(items: &[T]) -> Result<String, ExportError> {
    serde_json::to_string_pretty(items).map_err(|e| ExportError::Json(e.to_string()))
}

pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, ExportError> {
    serde_json::from_str(text).map_err(|e| ExportError::Json(e.to_string()))
}

pub(crate) fn history_to_csv(points: &[HistoryPoint]) -> String {
    let mut out = String::with_capacity(64 * (points.len() + 1));
    out.push_str(HISTORY_CSV_HEADER);
    out.push('\n');
    for p in points {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            p.scid,
            p.bucket_secs,
            p.start,
            p.samples,
            p.local_avg.0,
            p.local_min.0,
            p.local_max.0,
            p.capacity.0
        );
    }
    out
}

pub(crate) fn history_from_csv(text: &str) -> Result<Vec<HistoryPoint>, ExportError> {
    parse_rows(text, HISTORY_CSV_HEADER, |r| {
        Ok(HistoryPoint {
            scid: r.field()?,
            bucket_secs: r.field()?,
            start: r.field()?,
            samples: r.field()?,
            local_avg: r.msat()?,
            local_min: r.msat()?,
            local_max: r.msat()?,
            capacity: r.msat()?,
        })
    })
}

pub(crate) fn snapshots_to_csv(snaps: &[ChannelSnapshot]) -> String {
    let mut out = String::with_capacity(200 * (snaps.len() + 1));
    out.push_str(SNAPSHOT_CSV_HEADER);
    out.push('\n');
    for s in snaps {
        let expiry = s.min_expiry_blocks.map(|b| b.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.key,
            s.peer,
            state_name(s.state),
            s.peer_connected,
            s.capacity.0,
            s.local.0,
            s.remote.0,
            s.spendable.0,
            s.receivable.0,
            s.htlcs_in,
            s.htlcs_out,
            s.htlc_in_msat.0,
            s.htlc_out_msat.0,
            expiry,
            s.height,
            s.time
        );
    }
    out
}

pub(crate) fn snapshots_from_csv(text: &str) -> Result<Vec<ChannelSnapshot>, ExportError> {
    parse_rows(text, SNAPSHOT_CSV_HEADER, |r| {
        Ok(ChannelSnapshot {
            key: r.field()?,
            peer: r.field()?,
            state: {
                let s = r.raw()?;
                parse_state(s).ok_or_else(|| format!("unknown channel state '{s}'"))?
            },
            peer_connected: r.field()?,
            capacity: r.msat()?,
            local: r.msat()?,
            remote: r.msat()?,
            spendable: r.msat()?,
            receivable: r.msat()?,
            htlcs_in: r.field()?,
            htlcs_out: r.field()?,
            htlc_in_msat: r.msat()?,
            htlc_out_msat: r.msat()?,
            min_expiry_blocks: match r.raw()? {
                "" => None,
                v => Some(v.parse().map_err(|e| format!("min_expiry_blocks '{v}': {e}"))?),
            },
            height: r.field()?,
            time: r.field()?,
        })
    })
}

/// The fields of one CSV row, consumed left to right.
struct Row<'a> {
    fields: std::str::Split<'a, char>,
    column: usize,
}

impl<'a> Row<'a> {
    fn raw(&mut self) -> Result<&'a str, String> {
        self.column += 1;
        self.fields
            .next()
            .ok_or_else(|| format!("missing column {}", self.column))
    }

    fn field<T: FromStr>(&mut self) -> Result<T, String>
    where
        T::Err: fmt::Display,
    {
        let v = self.raw()?;
        v.parse()
            .map_err(|e| format!("column {} '{v}': {e}", self.column))
    }

    fn msat(&mut self) -> Result<Msat, String> {
        self.field().map(Msat)
    }
}

fn parse_rows<T>(
    text: &str,
    header: &str,
    mut row: impl FnMut(&mut Row<'_>) -> Result<T, String>,
) -> Result<Vec<T>, ExportError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    match lines.next() {
        Some((_, h)) if h == header => {}
        _ => {
            return Err(ExportError::Csv {
                line: 1,
                reason: format!("expected header '{header}'"),
            })
        }
    }
    let mut out = Vec::new();
    for (line, text) in lines.filter(|(_, l)| !l.is_empty()) {
        let err = |reason| ExportError::Csv { line, reason };
        let mut r = Row {
            fields: text.split(','),
            column: 0,
        };
        let value = row(&mut r).map_err(err)?;
        if r.fields.next().is_some() {
            return Err(err("too many columns".into()));
        }
        out.push(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::test_support::{channel, htlc, node};
    use super::super::snapshot::ChannelKey;
    use super::*;
    use crate::node::{ChannelState, HtlcDirection};
    use crate::types::Scid;

    fn points() -> Vec<HistoryPoint> {
        (0..5u64)
            .map(|i| HistoryPoint {
                scid: Scid::new(800_000 + i as u32, 3, 1).unwrap(),
                bucket_secs: if i % 2 == 0 { 300 } else { 3_600 },
                start: 1_700_000_000 + 300 * i,
                samples: i as u32 + 1,
                local_avg: Msat(1_000 * i),
                local_min: Msat(0),
                local_max: Msat(u64::MAX - i),
                capacity: Msat(5_000_000),
            })
            .collect()
    }

    fn snaps() -> Vec<ChannelSnapshot> {
        let mut a = channel(1, 1, 2_000_000, 500_000);
        a.htlcs = vec![htlc(HtlcDirection::In, 1, 1_000, 900_000)];
        let mut b = channel(2, 2, 0, 0);
        b.scid = None;
        b.state = ChannelState::ForceClosing;
        b.peer_connected = false;
        vec![
            ChannelSnapshot::from_channel(&a, 899_990, 1_700_000_000),
            ChannelSnapshot::from_channel(&b, 899_990, 1_700_000_000),
        ]
    }

    #[test]
    fn history_round_trips_in_both_formats() {
        for format in [ExportFormat::Csv, ExportFormat::Json] {
            let text = export_history(&points(), format).unwrap();
            assert_eq!(import_history(&text, format).unwrap(), points(), "{format}");
        }
        assert_eq!(history_from_csv(&history_to_csv(&[])).unwrap(), vec![]);
    }

    #[test]
    fn snapshots_round_trip_in_both_formats() {
        let s = snaps();
        assert_eq!(s[1].key, ChannelKey::Pending(node(2)));
        for format in [ExportFormat::Csv, ExportFormat::Json] {
            let text = export_snapshots(&s, format).unwrap();
            assert_eq!(import_snapshots(&text, format).unwrap(), s, "{format}");
        }
        let csv = snapshots_to_csv(&s);
        assert!(csv.lines().nth(1).unwrap().contains(",normal,true,"));
        assert!(csv.lines().nth(2).unwrap().starts_with("pending:02"));
    }

    #[test]
    fn bad_input_is_reported_with_its_line() {
        assert!(matches!(
            history_from_csv(""),
            Err(ExportError::Csv { line: 1, .. })
        ));
        let mut csv = history_to_csv(&points());
        csv.push_str("800000x3x1,300,1,1,1,1,1\n");
        assert!(matches!(
            history_from_csv(&csv),
            Err(ExportError::Csv { line: 7, .. })
        ));
        let extra = format!("{HISTORY_CSV_HEADER}\n800000x3x1,300,1,1,1,1,1,1,9\n");
        assert!(matches!(
            history_from_csv(&extra),
            Err(ExportError::Csv { line: 2, .. })
        ));
        let neg = format!("{HISTORY_CSV_HEADER}\r\n800000x3x1,300,1,1,-1,1,1,1\r\n");
        assert!(matches!(
            history_from_csv(&neg),
            Err(ExportError::Csv { line: 2, .. })
        ));
        let state = snapshots_to_csv(&snaps()).replace(",normal,", ",weird,");
        assert!(matches!(
            snapshots_from_csv(&state),
            Err(ExportError::Csv { line: 2, .. })
        ));
        assert!(matches!(
            import_history("[{", ExportFormat::Json),
            Err(ExportError::Json(_))
        ));
        assert_eq!("CSV".parse::<ExportFormat>().unwrap(), ExportFormat::Csv);
        assert!("xml".parse::<ExportFormat>().is_err());
    }
}
