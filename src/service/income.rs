//! Paid CLN invoices, recorded for income statistics.

use crate::store::{Record, Store, StoreResult, TypedTree};
use crate::types::Msat;
use serde::{Deserialize, Serialize};

pub(crate) const TREE: &str = "paid_invoices";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaidInvoice {
    pub label: String,
    pub amount: Msat,
    pub paid_at: u64,
}

impl Record for PaidInvoice {
    const VERSION: u8 = 1;
}

pub struct Income {
    tree: TypedTree<PaidInvoice>,
}

impl Income {
    pub fn open(store: &Store) -> StoreResult<Self> {
        Ok(Income {
            tree: store.tree(TREE)?,
        })
    }

    /// Keyed by time then label, so a range scan reads a period in order and a label
    /// paid twice (impossible in CLN, but cheap to allow) is not overwritten.
    pub fn record(&self, paid: &PaidInvoice) -> StoreResult<()> {
        let mut key = paid.paid_at.to_be_bytes().to_vec();
        key.extend_from_slice(paid.label.as_bytes());
        self.tree.put(key, paid)
    }

    /// Total received since `since` (unix seconds), and how many invoices.
    pub fn since(&self, since: u64) -> StoreResult<(Msat, usize)> {
        let mut total = 0u64;
        let mut n = 0;
        // A record that cannot be read holds no money: it is left out of the total.
        for item in self
            .tree
            .iter_readable(|e| log::debug!("income: skipping an unreadable record: {e}"))
        {
            let (_, p) = item?;
            if p.paid_at >= since {
                total = total.saturating_add(p.amount.0);
                n += 1;
            }
        }
        Ok((Msat(total), n))
    }

    /// Every payment at or after `since` as (amount, paid_at), oldest first: a range scan,
    /// since keys start with the payment time.
    pub(crate) fn paid_since(&self, since: u64) -> StoreResult<Vec<(Msat, u64)>> {
        self.tree
            .range(since.to_be_bytes()..)
            .map(|item| item.map(|(_, p)| (p.amount, p.paid_at)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_sum_by_period() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        {
            let store = Store::open(&path, 1).unwrap();
            let inc = Income::open(&store).unwrap();
            for (label, amount, at) in [("a", 1_000, 100), ("b", 2_000, 200), ("c", 4_000, 300)] {
                inc.record(&PaidInvoice {
                    label: label.into(),
                    amount: Msat(amount),
                    paid_at: at,
                })
                .unwrap();
            }
            store.flush().unwrap();
        }
        let store = Store::open(&path, 1).unwrap();
        let inc = Income::open(&store).unwrap();
        assert_eq!(inc.since(200).unwrap(), (Msat(6_000), 2));
        assert_eq!(inc.since(0).unwrap(), (Msat(7_000), 3));
        assert_eq!(
            inc.paid_since(200).unwrap(),
            vec![(Msat(2_000), 200), (Msat(4_000), 300)]
        );
    }
}
