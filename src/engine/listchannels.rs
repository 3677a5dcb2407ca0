//! Parses lightningd's `listchannels` answer (`{"channels":[...]}`) into [`GraphEdge`]s.
//!
//! Pure: it takes the bytes and never talks to the node. A malformed document is an error;
//! a well-formed entry that cannot describe an edge (missing field, bad scid or node id) is
//! skipped and counted, because one odd gossip entry must not cost us the whole graph.

use crate::node::GraphEdge;
use crate::types::{Msat, NodeId, Scid};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListChannelsError {
    #[error("malformed listchannels JSON: {0}")]
    Json(String),
}

/// The parsed edges and how many entries were unusable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub edges: Vec<GraphEdge>,
    pub skipped: usize,
}

#[cfg(test)]
pub(crate) fn parse_str(json: &str) -> Result<Parsed, ListChannelsError> {
    parse_slice(json.as_bytes())
}

pub fn parse_slice(json: &[u8]) -> Result<Parsed, ListChannelsError> {
    let doc: Doc<'_> = serde_json::from_slice(json).map_err(|e| ListChannelsError::Json(e.to_string()))?;
    let mut out = Parsed {
        edges: Vec::with_capacity(doc.channels.len()),
        skipped: 0,
    };
    for raw in doc.channels {
        match raw.into_edge() {
            Some(e) => out.edges.push(e),
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(borrow)]
    channels: Vec<RawChannel<'a>>,
}

#[derive(Deserialize)]
struct RawChannel<'a> {
    #[serde(borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(borrow)]
    destination: Option<Cow<'a, str>>,
    #[serde(borrow)]
    short_channel_id: Option<Cow<'a, str>>,
    amount_msat: Option<Amount>,
    active: Option<bool>,
    base_fee_millisatoshi: Option<Amount>,
    fee_per_millionth: Option<Amount>,
    delay: Option<Amount>,
    htlc_minimum_msat: Option<Amount>,
    htlc_maximum_msat: Option<Amount>,
    last_update: Option<Amount>,
}

impl RawChannel<'_> {
    fn into_edge(self) -> Option<GraphEdge> {
        let source: NodeId = self.source?.parse().ok()?;
        let destination: NodeId = self.destination?.parse().ok()?;
        let scid: Scid = self.short_channel_id?.parse().ok()?;
        let narrow = |a: Amount| u32::try_from(a.0).ok();
        Some(GraphEdge {
            scid,
            source,
            destination,
            capacity: Msat(self.amount_msat?.0),
            fee_base: Msat(self.base_fee_millisatoshi?.0),
            fee_ppm: narrow(self.fee_per_millionth?)?,
            cltv_delta: narrow(self.delay?)?,
            htlc_min: Msat(self.htlc_minimum_msat.map_or(0, |a| a.0)),
            // Old channel_updates may lack a maximum; zero means "capacity" to the graph.
            htlc_max: Msat(self.htlc_maximum_msat.map_or(0, |a| a.0)),
            active: self.active?,
            last_update: self.last_update.and_then(narrow).unwrap_or(0),
        })
    }
}

/// A non-negative integer that lightningd writes either as a JSON number or, in older
/// versions, as a string such as `"1000msat"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Amount(u64);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer or a \"<n>msat\" string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                u64::try_from(v)
                    .map(Amount)
                    .map_err(|_| E::custom("negative amount"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                let digits = v.strip_suffix("msat").unwrap_or(v);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(E::custom("bad amount string"));
                }
                digits
                    .parse()
                    .map(Amount)
                    .map_err(|_| E::custom("amount out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "03bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn entry(src: &str, dst: &str, scid: &str) -> String {
        format!(
            r#"{{"source":"{src}","destination":"{dst}","short_channel_id":"{scid}","direction":0,
            "public":true,"amount_msat":50000000,"message_flags":1,"channel_flags":0,"active":true,
            "last_update":1618492788,"base_fee_millisatoshi":1000,"fee_per_millionth":10,"delay":144,
            "htlc_minimum_msat":1000,"htlc_maximum_msat":49500000,"features":""}}"#
        )
    }

    #[test]
    fn parses_current_format() {
        let json = format!(
            r#"{{"channels":[{},{}]}}"#,
            entry(A, B, "1x2x3"),
            entry(B, A, "1x2x3")
        );
        let p = parse_str(&json).unwrap();
        assert_eq!(p.skipped, 0);
        assert_eq!(p.edges.len(), 2);
        let e = &p.edges[0];
        assert_eq!(e.scid.to_string(), "1x2x3");
        assert_eq!(e.source.to_hex(), A);
        assert_eq!(e.capacity, Msat(50_000_000));
        assert_eq!((e.fee_base, e.fee_ppm, e.cltv_delta), (Msat(1000), 10, 144));
        assert_eq!((e.htlc_min, e.htlc_max), (Msat(1000), Msat(49_500_000)));
        assert!(e.active);
        assert_eq!(e.last_update, 1618492788);
    }

    #[test]
    fn accepts_msat_strings_and_missing_maximum() {
        let json = format!(
            r#"{{"channels":[{{"source":"{A}","destination":"{B}","short_channel_id":"5x6x7",
            "amount_msat":"7000msat","active":false,"base_fee_millisatoshi":0,"fee_per_millionth":1,
            "delay":40,"htlc_minimum_msat":"0msat","last_update":3}}]}}"#
        );
        let p = parse_str(&json).unwrap();
        assert_eq!(p.edges.len(), 1);
        assert_eq!(p.edges[0].capacity, Msat(7000));
        assert_eq!(p.edges[0].htlc_max, Msat(0));
        assert!(!p.edges[0].active);
    }

    #[test]
    fn skips_unusable_entries_and_rejects_garbage() {
        let json = format!(
            r#"{{"channels":[{},{},{},{{"source":"{A}"}}]}}"#,
            entry(A, B, "1x2x3"),
            entry("zz", B, "1x2x3"),
            entry(A, B, "nope"),
        );
        let p = parse_str(&json).unwrap();
        assert_eq!((p.edges.len(), p.skipped), (1, 3));

        for bad in [
            "",
            "[]",
            "{}",
            r#"{"channels":3}"#,
            r#"{"channels":[{"amount_msat":-1}]}"#,
        ] {
            assert!(parse_str(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_slice(&[0xff, 0xfe, 0x00]).is_err());
        assert_eq!(parse_str(r#"{"channels":[]}"#).unwrap(), Parsed::default());
    }
}
