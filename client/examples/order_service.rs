//! An order service that marks an order paid in its own database *and* tells the rest of the
//! company, consistently, with a transactional message.
//!
//! The "database" is an embedded sled tree (any database with transactions works the same).
//! The rules that keep both sides consistent: the local transaction records the broker's
//! transaction id next to the order change, in the same local commit. The checker answers
//! check-backs from that record alone, and when it answers "rollback" for an id it has never
//! seen it records that too, so the local transaction can no longer commit under that id (a
//! check can arrive before the producer even heard that its half message was stored).
//!
//! Run against `txmq dev` (after `txmq topic create order-events --type transaction`):
//!
//! ```sh
//! cargo run -p txmq-client --example order_service -- 127.0.0.1:9870,127.0.0.1:9880,127.0.0.1:9890
//! ```

use std::sync::Arc;
use std::time::Duration;

use txmq_client::{
    CheckRequest, Client, LocalTransactionState, SendHalfRequest, TransactionChecker,
    TransactionProducer,
};

/// The order service's own database.
struct OrderDb {
    /// order id → status
    orders: sled::Tree,
    /// broker transaction id → order id, written in the same local transaction as the order;
    /// or [`ROLLED_BACK`] when a check-back found no trace of it first.
    txns: sled::Tree,
    /// transaction ids whose local transaction is still running.
    in_flight: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The mark of a transaction the checker answered "rollback" for before it was ever seen.
const ROLLED_BACK: &[u8] = b"\0rolled-back";

impl OrderDb {
    /// The local transaction: mark the order paid and remember which broker transaction it
    /// belongs to, atomically. Fails when the checker already rolled the id back.
    fn mark_paid(&self, order_id: &str, txn_id: &str) -> Result<(), String> {
        use sled::Transactional;
        use sled::transaction::ConflictableTransactionError;
        (&self.orders, &self.txns)
            .transaction(|(orders, txns)| {
                if txns.get(txn_id.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
                orders.insert(order_id.as_bytes(), b"paid".as_slice())?;
                txns.insert(txn_id.as_bytes(), order_id.as_bytes())?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| format!("{e:?}"))?;
        self.orders.flush().map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Answers check-backs from the database: that is the only source of truth.
struct Checker(Arc<OrderDb>);

impl TransactionChecker for Checker {
    async fn check(&self, request: &CheckRequest) -> LocalTransactionState {
        let id = &request.transaction_id;
        if self
            .0
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
        {
            // The local transaction has not finished yet: never guess.
            return LocalTransactionState::Unknown;
        }
        // Read, and mark an unseen id rolled back, in one local transaction.
        let seen = self.0.txns.transaction(|txns| {
            let value = txns.get(id.as_bytes())?;
            if value.is_none() {
                txns.insert(id.as_bytes(), ROLLED_BACK)?;
            }
            Ok(value)
        });
        match seen {
            Ok(Some(v)) if v.as_ref() != ROLLED_BACK => LocalTransactionState::Commit,
            Ok(_) => LocalTransactionState::Rollback,
            // Cannot read our own database right now: ask again later.
            Err(sled::transaction::TransactionError::<()>::Abort(()))
            | Err(sled::transaction::TransactionError::Storage(_)) => {
                LocalTransactionState::Unknown
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9870".into());
    let client = Client::new(endpoints.split(','))?;
    let dir = tempfile_dir();
    let db = sled::open(&dir)?;
    let orders = Arc::new(OrderDb {
        orders: db.open_tree("orders")?,
        txns: db.open_tree("txns")?,
        in_flight: Default::default(),
    });
    let producer = TransactionProducer::new(client.clone(), "order-service");
    // Keep the checker running for as long as the service runs.
    let _checker = producer.start_checker(Arc::new(Checker(orders.clone())), "order-service-1");

    for n in 1..=3 {
        let order_id = format!("order-{n}");
        let request = SendHalfRequest {
            topic: "order-events".into(),
            key: order_id.clone(),
            body: format!("{{\"order\":\"{order_id}\",\"status\":\"paid\"}}")
                .into_bytes()
                .into(),
            ..Default::default()
        };
        let db = orders.clone();
        let result = producer
            .send_in_transaction(request, |half| async move {
                db.in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(half.transaction_id.clone());
                let outcome = match db.mark_paid(&order_id, &half.transaction_id) {
                    Ok(()) => LocalTransactionState::Commit,
                    Err(_) => LocalTransactionState::Rollback,
                };
                db.in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&half.transaction_id);
                outcome
            })
            .await?;
        println!(
            "{}: local {:?}, broker says {}",
            result.half.transaction_id,
            result.local_state,
            result
                .end
                .map(|e| e.state)
                .unwrap_or_else(|| "pending (will be checked)".into())
        );
    }
    // Give the checker a moment in case any decision was lost on the way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("order-service-{}", std::process::id()))
}
