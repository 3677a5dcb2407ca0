//! The attempt loop against a node whose answers are scripted per payment.

use super::*;
use crate::engine::claims::ClaimSet;
use crate::engine::graph::tests::{chan, nid, scid};
use crate::engine::planner::tests::channel;
use crate::node::GraphEdge;
use crate::service::testnode::{Pay, ScriptedNode};
use crate::store::Store;
use crate::types::PaymentHash;
use std::sync::Arc;

const NOW: u64 = 1_000_000;
const AMOUNT: Msat = Msat(100_000_000);
const MAX_PPM: u32 = 1_000;

fn now() -> u64 {
    NOW
}

/// Us = 1 with peers 2 (the source, scid 1) and 3 (the sink, scid 2). The peers are joined
/// through 5 (cheap: scids 10, 11) and through 6 (dearer: scids 12, 13).
fn network() -> Vec<GraphEdge> {
    [
        (1, 1, 2, 0, 0),
        (2, 1, 3, 0, 0),
        (10, 2, 5, 1_000, 100),
        (11, 5, 3, 1_000, 100),
        (12, 2, 6, 1_000, 300),
        (13, 6, 3, 1_000, 300),
    ]
    .iter()
    .flat_map(|&(s, a, b, base, ppm)| chan(s, a, b, base, ppm, 40))
    .collect()
}

struct Setup {
    service: RebalanceService,
    node: ScriptedNode,
    planner: PlannerConfig,
    channels: Vec<Channel>,
    daily_budget: Msat,
}

fn setup(answers: impl IntoIterator<Item = Pay>) -> Setup {
    let service =
        RebalanceService::load(Store::temporary().unwrap(), Arc::new(ClaimSet::new()), 3_600).unwrap();
    service.refresh_graph(&network()).unwrap();
    let channels = vec![channel(1, 2, 500_000_000, 0), channel(2, 3, 500_000_000, 0)];
    Setup {
        service,
        node: ScriptedNode::new(nid(1), channels.clone()).pays(answers),
        planner: PlannerConfig::default(),
        channels,
        daily_budget: Msat(10_000_000),
    }
}

impl Setup {
    /// Moves [`AMOUNT`] out through scid 1 and back in through scid 2.
    async fn run(&self, budget_left: &mut Msat) -> MoveReport {
        let exec = Executor {
            service: &self.service,
            node: &self.node,
            planner: &self.planner,
            daily_budget: self.daily_budget,
            now: &now,
            me: nid(1),
            exec_id: "test",
            channels: &self.channels,
        };
        exec.execute_move(scid(1), scid(2), AMOUNT, MAX_PPM, budget_left)
            .await
            .unwrap()
    }

    fn outcomes(&self, r: &MoveReport) -> Vec<AttemptOutcome> {
        // The report and the store agree.
        let mut stored = self.service.attempts(Some("test"), 100).unwrap();
        stored.reverse();
        assert_eq!(
            stored.iter().map(|a| a.outcome).collect::<Vec<_>>(),
            r.recorded.iter().map(|a| a.outcome).collect::<Vec<_>>()
        );
        r.recorded.iter().map(|a| a.outcome).collect()
    }
}

#[tokio::test]
async fn a_part_that_succeeds_moves_the_amount_and_spends_its_fee() {
    let t = setup([Pay::Succeed]);
    let mut budget = Msat(1_000_000);
    let r = t.run(&mut budget).await;
    assert_eq!(
        (r.status, r.moved, r.attempts),
        (ExecStatus::Done, AMOUNT, 1),
        "{r:?}"
    );
    assert_eq!(t.outcomes(&r), [AttemptOutcome::Success]);
    // The cheap way round, through 5.
    assert_eq!(t.node.routes_sent(), [vec![scid(1), scid(10), scid(11), scid(2)]]);
    let fee = r.recorded[0].fee;
    assert!(fee.0 > 0 && r.fee == fee, "{r:?}");
    assert_eq!(budget, Msat(1_000_000 - fee.0));
    assert_eq!(t.service.spent_since(0).unwrap(), fee);
    // A final outcome forgets the preimage.
    assert_eq!(t.service.preimage_for(&r.recorded[0].payment_hash), None);
    assert!(t.node.script_used_up());
}

#[tokio::test]
async fn a_failure_at_a_middle_hop_is_learned_and_the_next_part_goes_round_it() {
    let t = setup([Pay::FailAt(scid(10)), Pay::Succeed]);
    let r = t.run(&mut Msat(1_000_000)).await;
    assert_eq!(
        t.node.routes_sent(),
        [
            vec![scid(1), scid(10), scid(11), scid(2)],
            vec![scid(1), scid(12), scid(13), scid(2)],
        ]
    );
    assert_eq!(t.outcomes(&r), [AttemptOutcome::Failed, AttemptOutcome::Success]);
    assert_eq!(r.recorded[0].failing_channel, Some(scid(10)));
    assert_eq!(
        (r.status, r.moved, r.attempts),
        (ExecStatus::Done, AMOUNT, 2),
        "{r:?}"
    );
    // Only the successful attempt's fee is spent.
    assert_eq!(r.fee, r.recorded[1].fee);
    assert_eq!(t.service.spent_since(0).unwrap(), r.recorded[1].fee);
}

#[tokio::test]
async fn an_answer_still_in_flight_ends_the_move_with_its_fee_counted() {
    // A broken connection leaves the payment just as undecided as a wait that ran out.
    for answer in [Pay::InFlight, Pay::Disconnect] {
        let t = setup([answer.clone()]);
        let mut budget = Msat(1_000_000);
        let r = t.run(&mut budget).await;
        assert_eq!(
            (r.status, r.attempts),
            (ExecStatus::InFlight, 1),
            "{answer:?}: {r:?}"
        );
        assert_eq!(r.moved, Msat(0));
        assert_eq!(t.outcomes(&r), [AttemptOutcome::Pending]);
        let fee = r.recorded[0].fee;
        assert!(fee.0 > 0 && r.fee == fee, "{r:?}");
        assert_eq!(budget, Msat(1_000_000 - fee.0));
        assert_eq!(t.service.spent_since(0).unwrap(), fee);
        let pending = t.service.pending_attempts().unwrap();
        assert_eq!(pending.len(), 1);
        // Its preimage stays, so the HTLC can still be claimed when it arrives.
        assert!(t.service.preimage_for(&pending[0].payment_hash).is_some());
        assert!(t.node.script_used_up());
    }
}

#[tokio::test]
async fn a_failure_at_our_own_channel_stops_the_move() {
    for ours in [scid(1), scid(2)] {
        // A second answer is scripted: the move must not ask for it.
        let t = setup([Pay::FailAt(ours), Pay::Succeed]);
        let r = t.run(&mut Msat(1_000_000)).await;
        assert_eq!((r.status, r.attempts), (ExecStatus::Failed, 1), "{r:?}");
        assert!(r.reason.contains(&format!("our channel {ours}")), "{}", r.reason);
        assert_eq!(t.outcomes(&r), [AttemptOutcome::Failed]);
        assert_eq!(t.node.routes_sent().len(), 1);
        assert_eq!(t.service.spent_since(0).unwrap(), Msat(0));
    }
}

#[tokio::test]
async fn a_refusal_fails_the_attempt_and_teaches_nothing() {
    let t = setup([Pay::Refuse, Pay::Refuse]);
    let r = t.run(&mut Msat(1_000_000)).await;
    assert_eq!((r.status, r.attempts), (ExecStatus::Failed, 2), "{r:?}");
    assert_eq!(
        r.reason,
        format!("{MAX_FAILURES_IN_A_ROW} attempts in a row failed")
    );
    assert_eq!(t.outcomes(&r), [AttemptOutcome::Failed, AttemptOutcome::Failed]);
    // Nothing placed the failure, so the same route is tried again.
    let sent = t.node.routes_sent();
    assert_eq!(sent[0], sent[1]);
    assert_eq!(t.service.spent_since(0).unwrap(), Msat(0));
}

#[tokio::test]
async fn the_execution_budget_stops_the_move_before_anything_is_sent() {
    let t = setup([]);
    // Below the fee of any route.
    let mut budget = Msat(1_000);
    let r = t.run(&mut budget).await;
    assert_eq!((r.status, r.attempts), (ExecStatus::Failed, 0), "{r:?}");
    assert!(r.reason.starts_with("no route within budget"), "{}", r.reason);
    assert!(t.node.routes_sent().is_empty());
    assert!(r.recorded.is_empty() && t.service.attempts(None, 10).unwrap().is_empty());
    assert_eq!(budget, Msat(1_000));
}

#[tokio::test]
async fn a_spent_daily_budget_stops_the_move_before_anything_is_sent() {
    let mut t = setup([]);
    t.daily_budget = Msat(50_000);
    // An attempt of an hour ago, still pending, has used it all.
    t.service
        .record_attempt(Attempt {
            id: 0,
            execution: "earlier".into(),
            time: NOW - 3_600,
            source: scid(1),
            sink: scid(2),
            amount: AMOUNT,
            fee: Msat(50_000),
            route: vec![scid(1), scid(10), scid(11), scid(2)],
            payment_hash: PaymentHash([1; 32]),
            outcome: AttemptOutcome::Pending,
            failing_channel: None,
            message: String::new(),
        })
        .unwrap();
    let r = t.run(&mut Msat(1_000_000)).await;
    assert_eq!((r.status, r.attempts), (ExecStatus::Failed, 0), "{r:?}");
    assert!(r.reason.starts_with("daily budget"), "{}", r.reason);
    assert!(t.node.routes_sent().is_empty());
}
