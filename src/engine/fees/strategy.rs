//! Strategies: how a matched rule turns a channel's numbers into a proportional fee.
//!
//! Each strategy returns an unclamped ppm and appends one clause to the explanation; the
//! caller clamps to the rule's bounds, so a strategy may overshoot without harm. All
//! arithmetic is in `f64` on validated, finite parameters and is converted back to ppm by
//! [`to_ppm`], which saturates instead of wrapping or panicking.

use super::decide::ChannelInputs;
use crate::types::Msat;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A float turned into a ppm: rounded, NaN and negatives to 0, too large to `u32::MAX`.
pub(crate) fn to_ppm(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u32::MAX as f64 {
        u32::MAX
    } else {
        x.round() as u32
    }
}

// Serialized as an internally tagged table; read through the flat `RawStrategy` so that
// errors keep their exact position and field name (serde buffers internally tagged input,
// which loses both) and an unknown `type` becomes a clear message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", try_from = "RawStrategy")]
pub enum Strategy {
    /// A fixed ppm (the base fee is the rule's `base_msat`).
    Static { ppm: u32 },
    /// The ppm follows the local ratio along a curve.
    Balance(BalanceParams),
    /// Steps from the current fee: up while the channel drains, down while it sits idle or
    /// refills.
    Flow(FlowParams),
    /// A recommendation from the balance and how well connected the peer is.
    Peer(PeerParams),
    /// Never below what rebalancing this channel recently cost, plus a margin.
    CostFloor(CostFloorParams),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Curve {
    /// Straight line from `empty_ppm` at ratio 0 to `full_ppm` at ratio 1.
    Linear,
    /// Geometric interpolation, `empty · (full/empty)^ratio`: equal ratio steps multiply the
    /// fee by equal factors, so the fee climbs steeply only as the channel nears empty, and
    /// the balanced middle sits at the geometric mean of the two ends.
    Exponential,
}

/// "Empty" and "full" refer to our side: local ratio 0 means everything has been pushed to
/// the peer, which is when outbound liquidity is scarce and should be expensive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BalanceParams {
    pub curve: Curve,
    pub empty_ppm: u32,
    pub full_ppm: u32,
}

impl BalanceParams {
    pub(crate) fn ppm_at(&self, ratio: f64) -> f64 {
        let r = if ratio.is_nan() {
            0.5
        } else {
            ratio.clamp(0.0, 1.0)
        };
        let (e, f) = (self.empty_ppm as f64, self.full_ppm as f64);
        match self.curve {
            Curve::Linear => e + (f - e) * r,
            // Validation keeps both ends >= 1; max(1) keeps a hand-built value from
            // producing 0/0 here.
            Curve::Exponential => {
                let (e, f) = (e.max(1.0), f.max(1.0));
                e * (f / e).powf(r)
            }
        }
    }
}

/// Flow is judged on the forwards of the caller's window: `net = (out - in) / (out + in)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlowParams {
    /// Relative raise per decision while draining (default 0.10 = +10 %).
    pub raise_step: f64,
    /// Relative cut per decision while idle or refilling (default 0.05 = -5 %).
    pub lower_step: f64,
    /// Smallest step (default 5), so that a fee near zero can still move.
    pub min_step_ppm: u32,
    /// `net` at or above this is draining, at or below its negative is refilling (default 0.2).
    pub drain_threshold: f64,
    /// Total flow (in + out) at or below this counts as idle (default 0).
    pub idle_msat: Msat,
}

impl Default for FlowParams {
    fn default() -> Self {
        FlowParams {
            raise_step: 0.10,
            lower_step: 0.05,
            min_step_ppm: 5,
            drain_threshold: 0.2,
            idle_msat: Msat::ZERO,
        }
    }
}

/// `ppm · 2^(balance_weight · (1 − 2·ratio)) · clamp(√(reference_channels / peer_channels), ½, 2)`
///
/// * Balance factor: ×2 when our side is empty, ×1 when balanced, ×½ when full (with the
///   default weight of 1), so scarce outbound liquidity costs more.
/// * Connectivity factor: a peer with many channels can be reached around us, so we compete
///   on price (down to ×½); a peer with few channels is reached mostly through us (up to ×2).
///   The peer's channel count comes from gossip; unknown counts as the reference (×1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PeerParams {
    /// The fee for a balanced channel to a peer with `reference_channels` channels.
    pub ppm: u32,
    /// Default 20.
    pub reference_channels: u32,
    /// Default 1.0.
    pub balance_weight: f64,
}

impl PeerParams {
    pub(crate) fn balance_factor(&self, ratio: f64) -> f64 {
        let r = if ratio.is_nan() {
            0.5
        } else {
            ratio.clamp(0.0, 1.0)
        };
        (self.balance_weight * (1.0 - 2.0 * r)).exp2()
    }

    pub(crate) fn connectivity_factor(&self, peer_channels: Option<u32>) -> f64 {
        match peer_channels {
            None => 1.0,
            Some(n) => (self.reference_channels.max(1) as f64 / n.max(1) as f64)
                .sqrt()
                .clamp(0.5, 2.0),
        }
    }
}

/// `max(inner, cost · (1 + margin_ratio) + margin_ppm)` where `inner` is the nested
/// strategy's ppm (0 without one, so the rule's `min_ppm` applies) and `cost` is the recent
/// rebalancing cost of this channel in ppm. Without cost data the floor is simply absent.
/// The rule's `max_ppm` still wins over the floor: bounds are a promise to the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostFloorParams {
    /// Default 0.
    pub margin_ppm: u32,
    /// Default 0.
    pub margin_ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Box<Strategy>>,
}

/// Every field any strategy takes, all optional; [`Strategy::try_from`] checks that the
/// ones given belong to the `type` and that the required ones are there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStrategy {
    #[serde(rename = "type")]
    kind: String,
    ppm: Option<u32>,
    curve: Option<Curve>,
    empty_ppm: Option<u32>,
    full_ppm: Option<u32>,
    raise_step: Option<f64>,
    lower_step: Option<f64>,
    min_step_ppm: Option<u32>,
    drain_threshold: Option<f64>,
    idle_msat: Option<Msat>,
    reference_channels: Option<u32>,
    balance_weight: Option<f64>,
    margin_ppm: Option<u32>,
    margin_ratio: Option<f64>,
    strategy: Option<Box<Strategy>>,
}

impl TryFrom<RawStrategy> for Strategy {
    type Error = String;

    fn try_from(r: RawStrategy) -> Result<Self, String> {
        let kind = r.kind.as_str();
        let given: [(&str, bool); 14] = [
            ("ppm", r.ppm.is_some()),
            ("curve", r.curve.is_some()),
            ("empty_ppm", r.empty_ppm.is_some()),
            ("full_ppm", r.full_ppm.is_some()),
            ("raise_step", r.raise_step.is_some()),
            ("lower_step", r.lower_step.is_some()),
            ("min_step_ppm", r.min_step_ppm.is_some()),
            ("drain_threshold", r.drain_threshold.is_some()),
            ("idle_msat", r.idle_msat.is_some()),
            ("reference_channels", r.reference_channels.is_some()),
            ("balance_weight", r.balance_weight.is_some()),
            ("margin_ppm", r.margin_ppm.is_some()),
            ("margin_ratio", r.margin_ratio.is_some()),
            ("strategy", r.strategy.is_some()),
        ];
        let allowed: &[&str] = match kind {
            "static" => &["ppm"],
            "balance" => &["curve", "empty_ppm", "full_ppm"],
            "flow" => &[
                "raise_step",
                "lower_step",
                "min_step_ppm",
                "drain_threshold",
                "idle_msat",
            ],
            "peer" => &["ppm", "reference_channels", "balance_weight"],
            "cost-floor" => &["margin_ppm", "margin_ratio", "strategy"],
            other => {
                return Err(format!(
                    "unknown strategy type `{other}`, expected one of `static`, `balance`, `flow`, `peer`, \
                     `cost-floor`"
                ))
            }
        };
        if let Some((field, _)) = given.iter().find(|(f, set)| *set && !allowed.contains(f)) {
            return Err(format!(
                "`{field}` does not apply to a `{kind}` strategy (it takes {})",
                allowed.join(", ")
            ));
        }
        let need =
            |v: Option<u32>, field: &str| v.ok_or_else(|| format!("a `{kind}` strategy needs `{field}`"));
        Ok(match kind {
            "static" => Strategy::Static {
                ppm: need(r.ppm, "ppm")?,
            },
            "balance" => Strategy::Balance(BalanceParams {
                curve: r.curve.ok_or_else(|| {
                    "a `balance` strategy needs `curve` (linear or exponential)".to_string()
                })?,
                empty_ppm: need(r.empty_ppm, "empty_ppm")?,
                full_ppm: need(r.full_ppm, "full_ppm")?,
            }),
            "flow" => {
                let d = FlowParams::default();
                Strategy::Flow(FlowParams {
                    raise_step: r.raise_step.unwrap_or(d.raise_step),
                    lower_step: r.lower_step.unwrap_or(d.lower_step),
                    min_step_ppm: r.min_step_ppm.unwrap_or(d.min_step_ppm),
                    drain_threshold: r.drain_threshold.unwrap_or(d.drain_threshold),
                    idle_msat: r.idle_msat.unwrap_or(d.idle_msat),
                })
            }
            "peer" => Strategy::Peer(PeerParams {
                ppm: need(r.ppm, "ppm")?,
                reference_channels: r.reference_channels.unwrap_or(20),
                balance_weight: r.balance_weight.unwrap_or(1.0),
            }),
            _ => Strategy::CostFloor(CostFloorParams {
                margin_ppm: r.margin_ppm.unwrap_or(0),
                margin_ratio: r.margin_ratio.unwrap_or(0.0),
                strategy: r.strategy,
            }),
        })
    }
}

/// What a strategy may look at.
pub(crate) struct EvalCtx<'a> {
    pub ch: &'a ChannelInputs,
    pub ratio: Option<f64>,
    /// The current ppm brought inside the rule's bounds: where step-wise strategies start,
    /// so a policy change does not have to walk back from an out-of-bounds fee.
    pub start_ppm: u32,
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn in_range(name: &str, v: f64, lo: f64, hi: f64) -> Result<(), String> {
    check(v.is_finite() && v >= lo && v <= hi, || {
        format!("{name} = {v} is outside {lo}..={hi}")
    })
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Static { .. } => "static",
            Strategy::Balance(_) => "balance",
            Strategy::Flow(_) => "flow",
            Strategy::Peer(_) => "peer",
            Strategy::CostFloor(_) => "cost-floor",
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        match self {
            Strategy::Static { .. } => Ok(()),
            Strategy::Balance(p) => check(
                p.curve == Curve::Linear || (p.empty_ppm >= 1 && p.full_ppm >= 1),
                || "strategy balance: the exponential curve needs empty_ppm and full_ppm >= 1".into(),
            ),
            Strategy::Flow(p) => {
                in_range("strategy flow: raise_step", p.raise_step, 0.0, 10.0)?;
                in_range("strategy flow: lower_step", p.lower_step, 0.0, 1.0)?;
                in_range("strategy flow: drain_threshold", p.drain_threshold, 0.0, 1.0)
            }
            Strategy::Peer(p) => {
                check(p.reference_channels >= 1, || {
                    "strategy peer: reference_channels must be >= 1".into()
                })?;
                in_range("strategy peer: balance_weight", p.balance_weight, 0.0, 10.0)
            }
            Strategy::CostFloor(p) => {
                in_range("strategy cost-floor: margin_ratio", p.margin_ratio, 0.0, 100.0)?;
                match p.strategy.as_deref() {
                    None => Ok(()),
                    Some(Strategy::CostFloor(_)) => {
                        Err("strategy cost-floor: the nested strategy cannot be cost-floor again".into())
                    }
                    Some(inner) => inner.validate(),
                }
            }
        }
    }

    /// The unclamped ppm, with one explanation clause appended to `out`.
    pub(crate) fn evaluate(&self, cx: &EvalCtx<'_>, out: &mut String) -> u32 {
        match self {
            Strategy::Static { ppm } => {
                let _ = write!(out, "static {ppm} ppm");
                *ppm
            }
            Strategy::Balance(p) => {
                let r = ratio_or_neutral(cx.ratio, out);
                let ppm = to_ppm(p.ppm_at(r));
                let curve = match p.curve {
                    Curve::Linear => "linear",
                    Curve::Exponential => "exponential",
                };
                let _ = write!(
                    out,
                    "balance {curve} curve ({} ppm empty .. {} ppm full) at local ratio {r:.2} -> {ppm} ppm",
                    p.empty_ppm, p.full_ppm
                );
                ppm
            }
            Strategy::Flow(p) => flow(p, cx, out),
            Strategy::Peer(p) => {
                let r = ratio_or_neutral(cx.ratio, out);
                let b = p.balance_factor(r);
                let c = p.connectivity_factor(cx.ch.peer_channels);
                let ppm = to_ppm(p.ppm as f64 * b * c);
                let _ = write!(
                    out,
                    "peer {} ppm x balance {b:.2} (local ratio {r:.2}) x connectivity {c:.2} (",
                    p.ppm
                );
                match cx.ch.peer_channels {
                    Some(n) => {
                        let _ = write!(out, "peer has {n} channels, reference {}", p.reference_channels);
                    }
                    None => out.push_str("peer channel count unknown"),
                }
                let _ = write!(out, ") -> {ppm} ppm");
                ppm
            }
            Strategy::CostFloor(p) => {
                let inner = match p.strategy.as_deref() {
                    Some(s) => {
                        let v = s.evaluate(cx, out);
                        out.push_str("; ");
                        v
                    }
                    None => 0,
                };
                match cx.ch.rebalance_cost_ppm {
                    None => {
                        out.push_str("cost floor: no recent rebalance cost known, no floor");
                        inner
                    }
                    Some(cost) => {
                        let floor = to_ppm(cost as f64 * (1.0 + p.margin_ratio) + p.margin_ppm as f64);
                        let _ = write!(
                            out,
                            "cost floor: rebalancing cost {cost} ppm + {:.0}% + {} ppm = {floor} ppm",
                            p.margin_ratio * 100.0,
                            p.margin_ppm
                        );
                        if floor > inner {
                            let _ = write!(out, " -> {floor} ppm");
                            floor
                        } else {
                            let _ = write!(out, " (not binding, {inner} ppm)");
                            inner
                        }
                    }
                }
            }
        }
    }
}

/// A channel of capacity 0 has no ratio; the neutral 0.5 keeps the curve in its middle
/// rather than at an extreme the data does not support.
fn ratio_or_neutral(ratio: Option<f64>, out: &mut String) -> f64 {
    match ratio {
        Some(r) => r,
        None => {
            out.push_str("capacity 0, local ratio unknown, assuming 0.50; ");
            0.5
        }
    }
}

fn flow(p: &FlowParams, cx: &EvalCtx<'_>, out: &mut String) -> u32 {
    let f = &cx.ch.flow;
    let (fin, fout) = (f.in_msat.0 as f64, f.out_msat.0 as f64);
    let total = fin + fout;
    let start = cx.start_ppm as f64;
    let raise = (start * p.raise_step).max(p.min_step_ppm as f64);
    let lower = (start * p.lower_step).max(p.min_step_ppm as f64);
    let _ = write!(
        out,
        "flow over {}: out {} msat, in {} msat",
        Window(f.window_secs),
        f.out_msat.0,
        f.in_msat.0
    );
    // `total > idle >= 0` below, so the division is always by a positive number.
    let (verdict, ppm) = if total <= p.idle_msat.0 as f64 {
        ("idle", start - lower)
    } else {
        let net = (fout - fin) / total;
        let _ = write!(out, ", net outward {net:.2}");
        if net >= p.drain_threshold {
            ("draining", start + raise)
        } else if net <= -p.drain_threshold {
            ("refilling", start - lower)
        } else {
            ("steady", start)
        }
    };
    let ppm = to_ppm(ppm);
    let _ = write!(out, " -> {verdict}: {} ppm -> {ppm} ppm", cx.start_ppm);
    ppm
}

/// Seconds as the largest whole unit that fits ("24h", "90m", "45s").
struct Window(u64);

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        match s {
            0 => f.write_str("the window"),
            _ if s.is_multiple_of(86_400) => write!(f, "{}d", s / 86_400),
            _ if s.is_multiple_of(3_600) => write!(f, "{}h", s / 3_600),
            _ if s.is_multiple_of(60) => write!(f, "{}m", s / 60),
            _ => write!(f, "{s}s"),
        }
    }
}
