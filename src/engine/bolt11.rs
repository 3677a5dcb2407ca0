//! Building the BOLT11 invoice for a hold invoice.
//!
//! ballast does not hold the node key, so it builds the invoice with every field it needs,
//! signs it with a throwaway key only so it serializes, and has the node re-sign it
//! (`signinvoice` on CLN, which ignores the existing signature). Leaving out the payee
//! field means the payer recovers the node's own key from the node's signature.

use crate::types::{Msat, NodeId, PaymentHash, Scid};
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use lightning_invoice::{
    Bolt11Invoice, Currency, InvoiceBuilder, PaymentSecret, RouteHint, RouteHintHop, RoutingFees,
};
use std::str::FromStr;
use std::time::Duration;

/// One private channel to advertise: the peer's policy for forwarding to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintHop {
    pub peer: NodeId,
    pub scid: Scid,
    pub fee_base: Msat,
    pub fee_ppm: u32,
    pub cltv_delta: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Description {
    Text(String),
    Hash([u8; 32]),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceSpec {
    pub network: String,
    pub amount: Msat,
    pub payment_hash: PaymentHash,
    pub payment_secret: [u8; 32],
    pub description: Description,
    pub created_at: u64,
    pub expiry_secs: u64,
    pub min_final_cltv: u32,
    pub hints: Vec<HintHop>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bolt11Error {
    #[error("unknown network '{0}' (expected bitcoin, testnet, testnet4, signet or regtest)")]
    Network(String),
    #[error("cannot build invoice: {0}")]
    Build(String),
    #[error("invoice does not parse: {0}")]
    Parse(String),
    #[error("signed invoice differs from what was requested: {0}")]
    Mismatch(&'static str),
}

fn currency(network: &str) -> Result<Currency, Bolt11Error> {
    Ok(match network {
        "bitcoin" | "mainnet" => Currency::Bitcoin,
        "testnet" | "testnet4" => Currency::BitcoinTestnet,
        "signet" => Currency::Signet,
        "regtest" => Currency::Regtest,
        other => return Err(Bolt11Error::Network(other.to_string())),
    })
}

/// Builds the invoice; the result still needs the node's signature.
pub fn build_unsigned(spec: &InvoiceSpec) -> Result<String, Bolt11Error> {
    let build = |e: &dyn std::fmt::Display| Bolt11Error::Build(e.to_string());
    let builder = InvoiceBuilder::new(currency(&spec.network)?)
        .amount_milli_satoshis(spec.amount.0)
        .payment_hash(sha256::Hash::from_byte_array(spec.payment_hash.0))
        .payment_secret(PaymentSecret(spec.payment_secret))
        .duration_since_epoch(Duration::from_secs(spec.created_at))
        .expiry_time(Duration::from_secs(spec.expiry_secs))
        .min_final_cltv_expiry_delta(spec.min_final_cltv as u64)
        .basic_mpp();
    let mut builder = builder;
    for h in &spec.hints {
        builder = builder.private_route(route_hint(h)?);
    }
    let mut text = match &spec.description {
        Description::Text(t) => builder.description(t.clone()).build_raw(),
        Description::Hash(h) => builder
            .description_hash(sha256::Hash::from_byte_array(*h))
            .build_raw(),
    }
    .map_err(|e| build(&e))?
    .sign::<_, Bolt11Error>(|msg| {
        // Any valid signature will do: the node replaces it. Derive the key from the hash so
        // the output is deterministic for tests.
        let key_bytes = sha256::Hash::hash(&[b"ballast-unsigned".as_slice(), &spec.payment_hash.0].concat());
        let key = SecretKey::from_slice(key_bytes.as_byte_array()).map_err(|e| build(&e))?;
        Ok(Secp256k1::signing_only().sign_ecdsa_recoverable(msg, &key))
    })?
    .to_string();
    // `to_string` on a signed raw invoice is the bech32 text.
    text.make_ascii_lowercase();
    Ok(text)
}

fn route_hint(h: &HintHop) -> Result<RouteHint, Bolt11Error> {
    let src = bitcoin::secp256k1::PublicKey::from_slice(&h.peer.0)
        .map_err(|e| Bolt11Error::Build(format!("route hint peer {}: {e}", h.peer)))?;
    Ok(RouteHint(vec![RouteHintHop {
        src_node_id: src,
        short_channel_id: h.scid.as_u64(),
        fees: RoutingFees {
            // A base fee that does not fit the field cannot be advertised truthfully.
            base_msat: u32::try_from(h.fee_base.0)
                .map_err(|_| Bolt11Error::Build(format!("route hint base fee {} too large", h.fee_base)))?,
            proportional_millionths: h.fee_ppm,
        },
        cltv_expiry_delta: h.cltv_delta,
        htlc_minimum_msat: None,
        htlc_maximum_msat: None,
    }]))
}

/// The fields of a (signed) invoice that ballast checks and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub payment_hash: PaymentHash,
    pub payment_secret: [u8; 32],
    pub amount: Option<Msat>,
    pub created_at: u64,
    pub expiry_secs: u64,
    pub min_final_cltv: u64,
    pub payee: NodeId,
    pub route_hints: usize,
}

pub fn decode(bolt11: &str) -> Result<Decoded, Bolt11Error> {
    let inv = Bolt11Invoice::from_str(bolt11).map_err(|e| Bolt11Error::Parse(e.to_string()))?;
    Ok(Decoded {
        payment_hash: PaymentHash(inv.payment_hash().to_byte_array()),
        payment_secret: inv.payment_secret().0,
        amount: inv.amount_milli_satoshis().map(Msat),
        created_at: inv.duration_since_epoch().as_secs(),
        expiry_secs: inv.expiry_time().as_secs(),
        min_final_cltv: inv.min_final_cltv_expiry_delta(),
        payee: NodeId(inv.recover_payee_pub_key().serialize()),
        route_hints: inv.private_routes().len(),
    })
}

/// Checks that the node signed what we asked for and nothing else.
pub(crate) fn verify_signed(signed: &str, spec: &InvoiceSpec) -> Result<Decoded, Bolt11Error> {
    let d = decode(signed)?;
    if d.payment_hash != spec.payment_hash {
        return Err(Bolt11Error::Mismatch("payment_hash"));
    }
    if d.payment_secret != spec.payment_secret {
        return Err(Bolt11Error::Mismatch("payment_secret"));
    }
    if d.amount != Some(spec.amount) {
        return Err(Bolt11Error::Mismatch("amount"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> InvoiceSpec {
        InvoiceSpec {
            network: "regtest".into(),
            amount: Msat(123_456),
            payment_hash: PaymentHash([3; 32]),
            payment_secret: [4; 32],
            description: Description::Text("coffee".into()),
            created_at: 1_700_000_000,
            expiry_secs: 3_600,
            min_final_cltv: 18,
            hints: vec![HintHop {
                peer: "02".parse::<NodeId>().unwrap_or(NodeId([2; 33])),
                scid: Scid::new(100, 2, 1).unwrap(),
                fee_base: Msat(1_000),
                fee_ppm: 10,
                cltv_delta: 40,
            }],
        }
    }

    fn valid_peer() -> NodeId {
        let key = SecretKey::from_slice(&[7; 32]).unwrap();
        NodeId(bitcoin::secp256k1::PublicKey::from_secret_key(&Secp256k1::new(), &key).serialize())
    }

    #[test]
    fn builds_a_parseable_invoice_with_every_field() {
        let mut s = spec();
        s.hints[0].peer = valid_peer();
        let text = build_unsigned(&s).unwrap();
        assert!(text.starts_with("lnbcrt1234560p1"), "{text}");
        let d = verify_signed(&text, &s).unwrap();
        assert_eq!(
            (d.created_at, d.expiry_secs, d.min_final_cltv),
            (1_700_000_000, 3_600, 18)
        );
        assert_eq!(d.route_hints, 1);
    }

    #[test]
    fn description_hash_and_bad_inputs() {
        let mut s = spec();
        s.hints.clear();
        s.description = Description::Hash([9; 32]);
        assert!(build_unsigned(&s).is_ok());
        s.network = "moon".into();
        assert_eq!(build_unsigned(&s), Err(Bolt11Error::Network("moon".into())));
        let mut s = spec();
        s.hints[0].peer = NodeId([0; 33]);
        assert!(matches!(build_unsigned(&s), Err(Bolt11Error::Build(_))));
        assert!(matches!(decode("lnbc1garbage"), Err(Bolt11Error::Parse(_))));
    }

    #[test]
    fn a_node_that_signs_something_else_is_caught() {
        let mut s = spec();
        s.hints.clear();
        let text = build_unsigned(&s).unwrap();
        s.amount = Msat(1);
        assert_eq!(verify_signed(&text, &s), Err(Bolt11Error::Mismatch("amount")));
    }
}
