//! Driver: realistic `htlc_accepted` payloads.

use super::*;

/// Random 32 bytes as 64 hex characters (payment hashes, shared secrets).
pub(super) fn random_hex32(rng: &mut Rng) -> [u8; 64] {
    let mut raw = [0u8; 32];
    rng.fill(&mut raw);
    let mut out = [0u8; 64];
    hex::encode_to_slice(raw, &mut out).expect("64 = 2 * 32");
    out
}

pub(super) fn scid_u64(block: u64, tx: u64, out: u64) -> u64 {
    (block << 40) | (tx << 16) | out
}

/// Truncated big-endian integer (BOLT #1 `tu64`/`tu32`).
pub(super) fn truncated(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

/// Forwarding hop payload: length-prefixed TLV stream with `amt_to_forward`
/// (2), `outgoing_cltv_value` (4) and `short_channel_id` (6).
pub(super) fn hop_payload(forward_msat: u64, outgoing_cltv: u64, next_scid: u64) -> Vec<u8> {
    tlv_payload([
        (2u8, truncated(forward_msat)),
        (4u8, truncated(outgoing_cltv)),
        (6u8, next_scid.to_be_bytes().to_vec()),
    ])
}

/// A hop payload: the length-prefixed TLV stream of `records` (type, value), in order.
pub(super) fn tlv_payload<const N: usize>(records: [(u8, Vec<u8>); N]) -> Vec<u8> {
    let mut tlv = Vec::new();
    for (typ, value) in records {
        tlv.push(typ);
        tlv.push(value.len() as u8);
        tlv.extend_from_slice(&value);
    }
    let mut out = vec![tlv.len() as u8]; // BigSize length, < 0xfd here.
    out.extend_from_slice(&tlv);
    out
}

/// Generates `htlc_accepted` hook requests as lightningd sends them for an
/// HTLC to forward: random payment hash and shared secret per HTLC, a
/// 1366-byte `next_onion` (version + pubkey + 1300 bytes of routing info +
/// HMAC, i.e. 2732 hex characters), valid pubkeys and channel ids.
pub(super) struct HtlcGen {
    pub(super) rng: Rng,
    pub(super) seq: u64,
    pub(super) next_onion: String,
    pub(super) forward_to: String,
}

impl HtlcGen {
    pub(super) fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut onion = vec![0u8; 1366];
        rng.fill(&mut onion);
        onion[0] = 0; // version
        onion[1] = 0x02; // ephemeral key prefix
        let mut chan = [0u8; 32];
        rng.fill(&mut chan);
        HtlcGen {
            rng,
            seq: 0,
            next_onion: hex::encode(onion),
            forward_to: hex::encode(chan),
        }
    }

    /// Writes the next request (with its `\n\n`) into `out`; returns its
    /// sequence number, the `N` of its id `cln:htlc_accepted#N`.
    pub(super) fn next(&mut self, out: &mut Vec<u8>) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        let payment_hash = random_hex32(&mut self.rng);
        let shared_secret = random_hex32(&mut self.rng);
        let amount_msat = 10_000 + self.rng.next() % 2_000_000_000;
        let fee_msat = 1_000 + amount_msat / 1_000_000;
        let forward_msat = amount_msat - fee_msat;
        let cltv_expiry_relative = 40 + self.rng.next() % 100;
        let cltv_expiry = BLOCKHEIGHT + cltv_expiry_relative;
        let outgoing_cltv = cltv_expiry - 34;
        let next_scid = (BLOCKHEIGHT - 95, 2, 1);
        let payload = hex::encode(hop_payload(
            forward_msat,
            outgoing_cltv,
            scid_u64(next_scid.0, next_scid.1, next_scid.2),
        ));
        out.clear();
        write!(
            out,
            concat!(
                r#"{{"jsonrpc":"2.0","id":"{prefix}{seq}","method":"htlc_accepted","params":{{"#,
                r#""peer_id":"{peer}","#,
                r#""onion":{{"payload":"{payload}","type":"tlv","short_channel_id":"{b}x{t}x{o}","#,
                r#""forward_msat":{fwd},"outgoing_cltv_value":{ocltv},"next_onion":"{onion}","#,
                r#""shared_secret":"{secret}"}},"#,
                r#""htlc":{{"short_channel_id":"103x1x0","id":{htlc_id},"amount_msat":{amt},"#,
                r#""cltv_expiry":{cltv},"cltv_expiry_relative":{rel},"payment_hash":"{hash}"}},"#,
                r#""forward_to":"{fwd_to}"}}}}"#,
                "\n\n"
            ),
            prefix = HOOK_ID_PREFIX,
            seq = seq,
            peer = PEER_ID,
            payload = payload,
            b = next_scid.0,
            t = next_scid.1,
            o = next_scid.2,
            fwd = forward_msat,
            ocltv = outgoing_cltv,
            onion = self.next_onion,
            secret = std::str::from_utf8(&shared_secret).expect("hex is ASCII"),
            htlc_id = seq - 1,
            amt = amount_msat,
            cltv = cltv_expiry,
            rel = cltv_expiry_relative,
            hash = std::str::from_utf8(&payment_hash).expect("hex is ASCII"),
            fwd_to = self.forward_to,
        )
        .expect("writing to a Vec cannot fail");
        seq
    }
}
