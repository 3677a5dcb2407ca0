//! Our fee policy on one channel through UpdateChannelPolicy, which also needs the channel's
//! time-lock delta re-sent (and raised to LND's minimum).

use super::convert::{chan_point, msat_i64, own_policy};
use super::errors::grpc_error;
use super::{LndNode, MIN_CLTV_DELTA};
use crate::lnd::proto::lnrpc;
use crate::node::{FeeUpdate, NodeError, NodeResult};
use crate::types::Scid;

impl LndNode {
    pub(super) async fn update_fee(&self, scid: Scid, fee: FeeUpdate) -> NodeResult<()> {
        const M: &str = "UpdateChannelPolicy";
        let channel = self
            .list_channels()
            .await?
            .into_iter()
            .find(|c| c.chan_id == scid.as_u64())
            .ok_or_else(|| NodeError::Rejected {
                method: M,
                code: None,
                message: format!("no open channel {scid}"),
            })?;
        let me = self.own_id().await?;
        let current = self
            .chan_info(scid.as_u64())
            .await?
            .and_then(|e| own_policy(&e, &me).map(|p| p.time_lock_delta))
            .filter(|d| *d > 0)
            .ok_or_else(|| NodeError::Rejected {
                method: M,
                code: None,
                message: format!("LND has no policy of ours for {scid} yet"),
            })?;
        // The delta is re-sent unchanged, except that LND refuses one below its minimum
        // (set under an older lnd, whose minimum was lower): that one is raised to it.
        let time_lock_delta = current.max(MIN_CLTV_DELTA);
        if time_lock_delta != current {
            log::info!(
                "{scid}: time-lock delta {current} is below LND's minimum {MIN_CLTV_DELTA}; raising it with the fee update"
            );
        }
        let request = lnrpc::PolicyUpdateRequest {
            scope: Some(lnrpc::policy_update_request::Scope::ChanPoint(chan_point(
                M,
                &channel.channel_point,
            )?)),
            base_fee_msat: msat_i64(M, fee.base)?,
            fee_rate: 0.0,
            fee_rate_ppm: fee.ppm,
            time_lock_delta,
            max_htlc_msat: 0,
            min_htlc_msat: 0,
            min_htlc_msat_specified: false,
        };
        let resp = self
            .lightning
            .clone()
            .update_channel_policy(request)
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        if let Some(f) = resp.failed_updates.first() {
            return Err(NodeError::Rejected {
                method: M,
                code: Some(i64::from(f.reason)),
                message: format!("{scid}: {}", f.update_error),
            });
        }
        Ok(())
    }
}
