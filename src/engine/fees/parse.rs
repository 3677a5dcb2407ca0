//! Reading policies from TOML and JSON, with errors that point at a line and a rule.

use super::policy::{Invalid, Location, Policy, PolicyError, RawPolicy, RuleRef};
use serde::Deserialize;
use std::ops::Range;

/// 1-based line and column of a byte offset (clamped into the text).
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let bytes = src.as_bytes();
    let before = bytes.get(..offset.min(bytes.len())).unwrap_or(bytes);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    // Count characters, not bytes, so the column matches what an editor shows.
    let col = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
        .chars()
        .count()
        + 1;
    (line, col)
}

/// Just enough of the document to know where each rule sits; everything else is ignored,
/// so this usually succeeds even when the real parse failed on a rule's contents.
#[derive(Deserialize)]
struct Probe {
    #[serde(default, alias = "rule")]
    rules: Vec<toml::Spanned<ProbeRule>>,
}

#[derive(Deserialize)]
struct ProbeRule {
    #[serde(default)]
    name: Option<toml::Value>,
}

struct RuleSpans(Vec<(Range<usize>, RuleRef)>);

impl RuleSpans {
    fn of(src: &str) -> RuleSpans {
        let Ok(probe) = toml::from_str::<Probe>(src) else {
            return RuleSpans(Vec::new());
        };
        let spans = probe.rules.into_iter().enumerate().map(|(index, r)| {
            let span = r.span();
            let name = match &r.get_ref().name {
                Some(toml::Value::String(s)) => s.clone(),
                _ => format!("rule{index}"),
            };
            (span, RuleRef { index, name })
        });
        RuleSpans(spans.collect())
    }

    /// The rule whose text contains `offset`. A `[rule.strategy]` sub-table written after its
    /// `[[rule]]` header lies outside the header's span, so fall back to the last rule that
    /// starts before the offset.
    fn containing(&self, offset: usize) -> Option<RuleRef> {
        self.0
            .iter()
            .find(|(s, _)| s.contains(&offset))
            .or_else(|| self.0.iter().rev().find(|(s, _)| s.start <= offset))
            .map(|(_, r)| r.clone())
    }

    fn start_of(&self, index: usize) -> Option<usize> {
        self.0
            .iter()
            .find(|(_, r)| r.index == index)
            .map(|(s, _)| s.start)
    }
}

pub(crate) fn from_toml(src: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = match toml::from_str(src) {
        Ok(raw) => raw,
        Err(e) => {
            let (line, column, rule) = match e.span() {
                Some(span) => {
                    let (l, c) = line_col(src, span.start);
                    (Some(l), Some(c), RuleSpans::of(src).containing(span.start))
                }
                None => (None, None, None),
            };
            return Err(PolicyError::Syntax {
                at: Location { line, column, rule },
                message: e.message().trim_end().to_string(),
            });
        }
    };
    raw.resolve().map_err(|Invalid { rule, reason }| {
        let line = rule
            .as_ref()
            .and_then(|r| RuleSpans::of(src).start_of(r.index))
            .map(|start| line_col(src, start).0);
        PolicyError::Invalid {
            at: Location {
                line,
                column: None,
                rule,
            },
            reason,
        }
    })
}

fn json_error(e: serde_json::Error) -> PolicyError {
    // serde_json reports line 0 for errors that are not tied to a position.
    let line = (e.line() > 0).then_some(e.line());
    let column = line.map(|_| e.column());
    let mut message = e.to_string();
    // The position is already in the location; keep the message to the reason.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    PolicyError::Syntax {
        at: Location {
            line,
            column,
            rule: None,
        },
        message,
    }
}

pub(crate) fn from_json(src: &str) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = serde_json::from_str(src).map_err(json_error)?;
    raw.resolve().map_err(PolicyError::from)
}

pub(crate) fn from_json_value(v: serde_json::Value) -> Result<Policy, PolicyError> {
    let raw: RawPolicy = serde_json::from_value(v).map_err(json_error)?;
    raw.resolve().map_err(PolicyError::from)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn line_col_counts_from_one_and_tolerates_any_offset() {
        let s = "ab\ncdé\nf";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 7), (2, 4));
        assert_eq!(line_col(s, 8), (3, 1));
        assert_eq!(line_col(s, 9), (3, 2));
        assert_eq!(line_col(s, 6), (2, 4)); // inside 'é'
        assert_eq!(line_col(s, 1_000), (3, 2));
        assert_eq!(line_col("", 5), (1, 1));
    }
}
