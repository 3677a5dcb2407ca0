//! Forwards (`listforwards`, `forward_event`) and invoices (`listinvoices`, `signinvoice`).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardStatus {
    Offered,
    Settled,
    LocalFailed,
    Failed,
}

impl ForwardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardStatus::Offered => "offered",
            ForwardStatus::Settled => "settled",
            ForwardStatus::LocalFailed => "local_failed",
            ForwardStatus::Failed => "failed",
        }
    }
}

/// A forwarding attempt (`listforwards` entry, `forward_event` payload).
#[derive(Clone, Debug)]
pub struct Forward {
    pub created_index: u64,
    pub updated_index: Option<u64>,
    pub payment_hash: String,
    pub in_channel: String,
    pub in_htlc_id: u64,
    pub in_msat: u64,
    pub out_channel: Option<String>,
    pub out_htlc_id: Option<u64>,
    /// Known once an outgoing HTLC was offered.
    pub out_msat: Option<u64>,
    pub status: ForwardStatus,
    pub received_time: f64,
    pub resolved_time: Option<f64>,
    pub failcode: Option<u32>,
    pub failreason: Option<String>,
}

impl Forward {
    /// A settled forward earning `in_msat - out_msat`.
    pub fn settled(in_channel: &str, out_channel: &str, in_msat: u64, out_msat: u64) -> Self {
        let now = now_secs() as f64;
        Forward {
            created_index: 0,
            updated_index: None,
            payment_hash: hash_hex(&format!("fwd:{in_channel}:{out_channel}:{in_msat}:{now}")),
            in_channel: in_channel.into(),
            in_htlc_id: 0,
            in_msat,
            out_channel: Some(out_channel.into()),
            out_htlc_id: Some(0),
            out_msat: Some(out_msat),
            status: ForwardStatus::Settled,
            received_time: now - 1.0,
            resolved_time: Some(now),
            failcode: None,
            failreason: None,
        }
    }

    pub fn fee_msat(&self) -> Option<u64> {
        self.out_msat.map(|o| self.in_msat.saturating_sub(o))
    }

    /// The `listforwards` entry (CLN omits the payment hash there).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "created_index": self.created_index,
            "in_channel": self.in_channel,
            "in_htlc_id": self.in_htlc_id,
            "in_msat": self.in_msat,
            "status": self.status.as_str(),
            "received_time": self.received_time,
            "style": "tlv",
        });
        if let Some(u) = self.updated_index {
            v["updated_index"] = json!(u);
        }
        if let Some(oc) = &self.out_channel {
            v["out_channel"] = json!(oc);
        }
        if let Some(h) = self.out_htlc_id {
            v["out_htlc_id"] = json!(h);
        }
        if let (Some(out), Some(_)) = (self.out_msat, &self.out_channel) {
            v["out_msat"] = json!(out);
            v["fee_msat"] = json!(self.fee_msat());
        }
        // The v26.06 schema only allows (and then requires) a resolution
        // time on `settled` and `failed` forwards.
        if matches!(self.status, ForwardStatus::Settled | ForwardStatus::Failed) {
            v["resolved_time"] = json!(self.resolved_time.unwrap_or(self.received_time));
        }
        if matches!(self.status, ForwardStatus::LocalFailed | ForwardStatus::Failed) {
            if let Some(c) = self.failcode {
                v["failcode"] = json!(c);
            }
            if let Some(r) = &self.failreason {
                v["failreason"] = json!(r);
            }
        }
        v
    }

    /// Payload of the `forward_event` notification for this forward.
    pub fn to_notification(&self) -> Value {
        let mut v = self.to_json();
        let o = v.as_object_mut().expect("object");
        o.remove("created_index");
        o.remove("updated_index");
        o.remove("in_htlc_id");
        o.remove("out_htlc_id");
        o.insert("payment_hash".into(), json!(self.payment_hash));
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    Unpaid,
    Paid,
    Expired,
}

#[derive(Clone, Debug)]
pub struct Invoice {
    pub label: String,
    pub description: String,
    pub bolt11: String,
    pub payment_hash: String,
    pub preimage: String,
    pub amount_msat: Option<u64>,
    pub status: InvoiceStatus,
    pub expires_at: u64,
    pub created_index: u64,
    pub updated_index: Option<u64>,
    pub pay_index: Option<u64>,
    pub amount_received_msat: Option<u64>,
    pub paid_at: Option<u64>,
}

impl Invoice {
    /// An unpaid invoice whose preimage is derived from the label. The
    /// bolt11 string is a placeholder: the fake node cannot sign.
    pub fn unpaid(label: &str, amount_msat: Option<u64>) -> Self {
        let preimage = hash_hex(&format!("preimage:{label}"));
        Invoice {
            label: label.into(),
            description: format!("invoice {label}"),
            bolt11: format!("lnbcrt1fake{}", &hash_hex(label)[..20]),
            payment_hash: payment_hash_of(&preimage),
            preimage,
            amount_msat,
            status: InvoiceStatus::Unpaid,
            expires_at: now_secs() + 3600,
            created_index: 0,
            updated_index: None,
            pay_index: None,
            amount_received_msat: None,
            paid_at: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "label": self.label,
            "description": self.description,
            "bolt11": self.bolt11,
            "payment_hash": self.payment_hash,
            "status": match self.status {
                InvoiceStatus::Unpaid => "unpaid",
                InvoiceStatus::Paid => "paid",
                InvoiceStatus::Expired => "expired",
            },
            "expires_at": self.expires_at,
            "created_index": self.created_index,
        });
        if let Some(a) = self.amount_msat {
            v["amount_msat"] = json!(a);
        }
        if let Some(u) = self.updated_index {
            v["updated_index"] = json!(u);
        }
        if self.status == InvoiceStatus::Paid {
            v["pay_index"] = json!(self.pay_index.unwrap_or(1));
            v["amount_received_msat"] = json!(self.amount_received_msat.or(self.amount_msat).unwrap_or(0));
            v["paid_at"] = json!(self.paid_at.unwrap_or_else(now_secs));
            v["payment_preimage"] = json!(self.preimage);
        }
        v
    }
}

/// Private key of one of [`PUBKEYS`]: they are k·G, so the key is k.
pub fn secret_key_of(node_id: &str) -> Option<[u8; 32]> {
    let k = PUBKEYS.iter().position(|p| *p == node_id)? + 1;
    let mut key = [0u8; 32];
    key[31] = k as u8;
    Some(key)
}

/// What lightningd's `signinvoice` does: replace the signature of a BOLT11
/// invoice with the node's, whatever signature it carried. Like lightningd,
/// refuses an invoice for another network.
pub fn sign_invoice(invstring: &str, node_id: &str, network: &str) -> Result<String, String> {
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use lightning_invoice::{Currency, SignedRawBolt11Invoice};
    let parsed: SignedRawBolt11Invoice = invstring
        .parse()
        .map_err(|e| format!("Unparsable invoice: {e:?}"))?;
    let (raw, _, _) = parsed.into_parts();
    let expected = match network {
        "bitcoin" => Currency::Bitcoin,
        "testnet" | "testnet4" => Currency::BitcoinTestnet,
        "signet" => Currency::Signet,
        _ => Currency::Regtest,
    };
    if raw.hrp.currency != expected {
        return Err(format!(
            "Invoice is for another network: {:?}, we are on {network}",
            raw.hrp.currency
        ));
    }
    let secret = secret_key_of(node_id)
        .ok_or_else(|| format!("fake node cannot sign as {node_id}: use one of harness::pubkey(i)"))?;
    let key = SecretKey::from_slice(&secret).map_err(|e| e.to_string())?;
    let secp = Secp256k1::signing_only();
    let signed = raw
        .sign::<_, std::convert::Infallible>(|msg| Ok(secp.sign_ecdsa_recoverable(msg, &key)))
        .unwrap_or_else(|never| match never {});
    Ok(signed.to_string())
}

impl FakeNode {
    /// Appends a forward, assigning its `created_index`; returns it.
    pub fn add_forward(&self, mut fwd: Forward) -> u64 {
        self.with(|s| {
            fwd.created_index = s.forwards.len() as u64 + 1;
            s.forwards.push(fwd);
            s.forwards.len() as u64
        })
    }

    /// Appends an invoice, assigning its `created_index`; returns it.
    pub fn add_invoice(&self, mut inv: Invoice) -> u64 {
        self.with(|s| {
            inv.created_index = s.invoices.len() as u64 + 1;
            s.invoices.push(inv);
            s.invoices.len() as u64
        })
    }
}
