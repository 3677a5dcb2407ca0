//! Newtypes for the values that move money around, so a fee cannot be passed where an
//! amount is expected and a malformed hash cannot reach the engine.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Errors from parsing user- or daemon-supplied identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid short_channel_id '{0}': expected BLOCKxTXxOUT")]
    Scid(String),
    #[error("invalid {what} '{value}': expected {len} hex characters")]
    Hex {
        what: &'static str,
        value: String,
        len: usize,
    },
}

/// An amount in millisatoshi. Arithmetic is explicit (checked/saturating) on purpose.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Msat(pub u64);

impl Msat {
    pub const ZERO: Msat = Msat(0);
    pub fn saturating_sub(self, o: Msat) -> Msat {
        Msat(self.0.saturating_sub(o.0))
    }
}

impl fmt::Display for Msat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}msat", self.0)
    }
}

/// A short channel id: block height (24 bits), transaction index (24 bits), output (16 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scid(u64);

impl Scid {
    pub fn new(block: u32, tx: u32, out: u16) -> Option<Scid> {
        if block >= 1 << 24 || tx >= 1 << 24 {
            return None;
        }
        Some(Scid((block as u64) << 40 | (tx as u64) << 16 | out as u64))
    }
    pub fn from_u64(v: u64) -> Scid {
        Scid(v)
    }
    pub fn as_u64(self) -> u64 {
        self.0
    }
    pub fn block(self) -> u32 {
        (self.0 >> 40) as u32
    }
    pub fn tx(self) -> u32 {
        ((self.0 >> 16) & 0xff_ffff) as u32
    }
    pub fn out(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl fmt::Display for Scid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.block(), self.tx(), self.out())
    }
}

impl FromStr for Scid {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Scid(s.to_string());
        let mut it = s.split('x');
        let (Some(b), Some(t), Some(o), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(err());
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        if !(digits(b) && digits(t) && digits(o)) {
            return Err(err());
        }
        let b: u32 = b.parse().map_err(|_| err())?;
        let t: u32 = t.parse().map_err(|_| err())?;
        let o: u16 = o.parse().map_err(|_| err())?;
        Scid::new(b, t, o).ok_or_else(err)
    }
}

impl Serialize for Scid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Decodes exactly `N` bytes of hex; shared by every fixed-size hex newtype.
pub(crate) fn decode_hex_array<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], ParseError> {
    let mut out = [0u8; N];
    if s.len() != 2 * N || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(ParseError::Hex {
            what,
            value: s.chars().take(80).collect(),
            len: 2 * N,
        });
    }
    Ok(out)
}

macro_rules! hex_newtype {
    ($(#[$m:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }
        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode_hex_array::<$len>($what, s).map($name)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_newtype!(
    /// sha256 of a preimage; identifies a payment.
    PaymentHash, 32, "payment_hash"
);
hex_newtype!(
    /// Compressed secp256k1 public key of a node.
    NodeId, 33, "node id"
);

impl fmt::Debug for PaymentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PaymentHash({})", self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_hex())
    }
}

/// A payment preimage. Deliberately has no `Display` and a redacting `Debug`, so it cannot
/// end up in a log line by accident.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Preimage(pub [u8; 32]);

impl Preimage {
    pub fn payment_hash(&self) -> PaymentHash {
        use sha2::Digest;
        PaymentHash(sha2::Sha256::digest(self.0).into())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(<redacted>)")
    }
}

impl FromStr for Preimage {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex_array::<32>("preimage", s).map(Preimage)
    }
}

impl Serialize for Preimage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Preimage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scid_round_trips_and_rejects_garbage() {
        let s: Scid = "700000x1234x1".parse().unwrap();
        assert_eq!((s.block(), s.tx(), s.out()), (700000, 1234, 1));
        assert_eq!(s.to_string(), "700000x1234x1");
        for bad in [
            "",
            "1x2",
            "1x2x3x4",
            "ax1x1",
            "1x1x70000",
            "16777216x0x0",
            "+1x1x1",
            "1x 1x1",
        ] {
            assert!(bad.parse::<Scid>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn hashes_parse_exact_length_hex_only() {
        let h = "00".repeat(32);
        assert!(h.parse::<PaymentHash>().is_ok());
        assert!("00".repeat(31).parse::<PaymentHash>().is_err());
        assert!("zz".repeat(32).parse::<PaymentHash>().is_err());
        let p = Preimage([7; 32]);
        assert_eq!(p.payment_hash(), p.payment_hash());
        assert_eq!(format!("{p:?}"), "Preimage(<redacted>)");
    }
}
