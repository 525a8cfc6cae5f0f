//! The producer instances connected to this node for check-backs, by producer group.
//!
//! Only the leader holds registrations (see `txn_service::check_channel`; one channel's
//! life is [`session::CheckSession`]). Checks for a
//! group are spread round robin over its instances; each instance has a bounded queue, and a
//! full queue moves on to the next instance.

pub mod session;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use txmq_proto::client::CheckRequest;

/// Checks queued per instance before it counts as busy.
pub const INSTANCE_QUEUE: usize = 256;
/// The most instances one node accepts by default (`--max-check-channels`).
pub const MAX_INSTANCES: usize = 4096;

/// The message property naming the client instance that sent a half message.
pub const SENDER_PROPERTY: &str = "rmq.client-id";

/// Which topics' checks an instance may receive (its user's produce rights).
pub type TopicFilter = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

struct Instance {
    key: u64,
    /// The client instance behind the channel, when it says (a RocketMQ client's id).
    client_id: Option<String>,
    checks: mpsc::Sender<CheckRequest>,
    may_check: TopicFilter,
}

#[derive(Default)]
struct Group {
    instances: Vec<Instance>,
    cursor: usize,
}

pub struct CheckerRegistry {
    groups: Mutex<HashMap<String, Group>>,
    next_key: AtomicU64,
    max_instances: usize,
}

impl Default for CheckerRegistry {
    fn default() -> Self {
        Self::new(MAX_INSTANCES)
    }
}

/// Registration refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "this node already has {0} check channels, the most it allows (--max-check-channels); retry later"
)]
pub struct TooManyInstances(usize);

impl CheckerRegistry {
    pub fn new(max_instances: usize) -> Self {
        CheckerRegistry {
            groups: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            max_instances,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an instance; returns its key and the stream of checks for it.
    pub fn register(
        &self,
        group: &str,
        may_check: TopicFilter,
        client_id: Option<String>,
    ) -> Result<(u64, mpsc::Receiver<CheckRequest>), TooManyInstances> {
        let mut groups = self.lock();
        let total: usize = groups.values().map(|g| g.instances.len()).sum();
        if total >= self.max_instances {
            metrics::counter!("txmq_limit_refusals_total", "limit" => "check_channels")
                .increment(1);
            return Err(TooManyInstances(self.max_instances));
        }
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(INSTANCE_QUEUE);
        groups
            .entry(group.to_string())
            .or_default()
            .instances
            .push(Instance {
                key,
                client_id,
                checks: tx,
                may_check,
            });
        Ok((key, rx))
    }

    pub fn unregister(&self, group: &str, key: u64) {
        let mut groups = self.lock();
        if let Some(g) = groups.get_mut(group) {
            g.instances.retain(|i| i.key != key);
            if g.instances.is_empty() {
                groups.remove(group);
            }
        }
    }

    /// The groups with at least one live instance here (reported to the leader).
    pub fn groups(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, g)| g.instances.iter().any(|i| !i.checks.is_closed()))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// True when at least one live instance of `group` is connected.
    pub fn has_instances(&self, group: &str) -> bool {
        self.lock()
            .get(group)
            .is_some_and(|g| g.instances.iter().any(|i| !i.checks.is_closed()))
    }

    /// Hands a check to the instance that sent the half message if it is here (its client id
    /// travels in the message's `rmq.client-id` property), else to the next instance of its
    /// group that has room and may see the check's topic. False if none could take it.
    pub fn send(&self, request: CheckRequest) -> bool {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(&request.group) else {
            return false;
        };
        g.instances.retain(|i| !i.checks.is_closed());
        if let Some(sender) = request.properties.get(SENDER_PROPERTY)
            && let Some(instance) = g.instances.iter().find(|i| {
                i.client_id.as_deref() == Some(sender.as_str()) && (i.may_check)(&request.topic)
            })
            && instance.checks.try_send(request.clone()).is_ok()
        {
            return true;
        }
        let n = g.instances.len();
        for i in 0..n {
            let idx = (g.cursor + i) % n;
            let instance = &g.instances[idx];
            if (instance.may_check)(&request.topic)
                && instance.checks.try_send(request.clone()).is_ok()
            {
                g.cursor = (idx + 1) % n;
                return true;
            }
        }
        false
    }

    /// Drops every registration (on leadership loss): the streams end and clients reconnect
    /// to the new leader.
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub fn instance_count(&self) -> usize {
        self.lock().values().map(|g| g.instances.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(group: &str, id: &str) -> CheckRequest {
        CheckRequest {
            transaction_id: id.into(),
            group: group.into(),
            topic: "orders".into(),
            ..Default::default()
        }
    }

    fn any() -> TopicFilter {
        std::sync::Arc::new(|_| true)
    }

    #[tokio::test]
    async fn an_instance_gets_only_checks_of_topics_it_may_produce_to() {
        let registry = CheckerRegistry::default();
        let only_pay: TopicFilter = std::sync::Arc::new(|t| t == "pay");
        let (_, mut pay) = registry.register("g", only_pay, None).unwrap();
        assert!(
            !registry.send(check("g", "1")),
            "no instance may see 'orders'"
        );
        let (_, mut orders) = registry.register("g", any(), None).unwrap();
        assert!(registry.send(check("g", "2")));
        assert_eq!(orders.recv().await.unwrap().transaction_id, "2");
        assert!(pay.try_recv().is_err());
    }

    #[tokio::test]
    async fn checks_are_spread_over_instances_and_only_to_their_group() {
        let registry = CheckerRegistry::default();
        let (_, mut a) = registry.register("g", any(), None).unwrap();
        let (_, mut b) = registry.register("g", any(), None).unwrap();
        let (_, mut other) = registry.register("h", any(), None).unwrap();
        assert!(registry.send(check("g", "1")));
        assert!(registry.send(check("g", "2")));
        assert_eq!(a.recv().await.unwrap().transaction_id, "1");
        assert_eq!(b.recv().await.unwrap().transaction_id, "2");
        assert!(other.try_recv().is_err());
        assert!(!registry.send(check("nobody", "3")));
    }

    #[tokio::test]
    async fn closed_instances_are_skipped_and_clear_ends_streams() {
        let registry = CheckerRegistry::default();
        let (_, a) = registry.register("g", any(), None).unwrap();
        drop(a);
        assert!(!registry.has_instances("g"));
        assert!(!registry.send(check("g", "1")));
        let (_, mut b) = registry.register("g", any(), None).unwrap();
        assert!(registry.send(check("g", "2")));
        registry.clear();
        assert_eq!(b.recv().await.unwrap().transaction_id, "2");
        assert!(b.recv().await.is_none(), "the stream ends after clear");
    }

    #[tokio::test]
    async fn the_instance_that_sent_the_half_message_gets_its_check_first() {
        let registry = CheckerRegistry::default();
        let (_, mut a) = registry
            .register("g", any(), Some("client-a".into()))
            .unwrap();
        let (_, mut b) = registry
            .register("g", any(), Some("client-b".into()))
            .unwrap();
        for id in ["1", "2", "3"] {
            let mut request = check("g", id);
            request
                .properties
                .insert(SENDER_PROPERTY.into(), "client-b".into());
            assert!(registry.send(request));
        }
        for id in ["1", "2", "3"] {
            assert_eq!(b.recv().await.unwrap().transaction_id, id);
        }
        assert!(
            a.try_recv().is_err(),
            "round robin would have given client-a some"
        );
        // A sender that is not connected here: any instance.
        let mut request = check("g", "4");
        request
            .properties
            .insert(SENDER_PROPERTY.into(), "gone".into());
        assert!(registry.send(request));
    }
}
