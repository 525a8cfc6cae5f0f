//! QueryRoute: every topic's queues on every node, each node one broker (named after its
//! address) whose endpoints are that node's advertised RocketMQ address alone.
//!
//! Why one broker per node and not one broker listing every node: the official clients dial a
//! broker's endpoints as one gRPC target (`ipv4:a:1,b:2,c:3`), and gRPC then sends that whole
//! string as the HTTP/2 `:authority`, which is not a valid authority; txmq's HTTP/2 server
//! (hyper) rightly refuses such requests. With one address per broker every request is well
//! formed, and a client still spreads over the nodes and fails over by itself: producers send
//! to the queues of every broker (a failed send is retried on another queue), consumers
//! receive from any, and a producer opens its Telemetry stream — its check-back channel — to
//! every broker, so the leader finds one on itself.
//!
//! Queue ids repeat per broker: a receive leases from the whole topic for its group whatever
//! queue it names, and txmq places a sent message by its key, not by the queue asked for.

use std::net::Ipv4Addr;

use txmq_proto::rocketmq as rmq;
use txmq_state::{TopicKind, TopicMeta};

/// The broker a node is in routes: named after its address, reachable there alone.
pub fn broker(addr: &str) -> Option<rmq::Broker> {
    let (host, port) = addr.rsplit_once(':')?;
    let scheme = if host.parse::<Ipv4Addr>().is_ok() {
        rmq::AddressScheme::IPv4
    } else {
        rmq::AddressScheme::DomainName
    };
    Some(rmq::Broker {
        name: format!("txmq@{addr}"),
        // Clients use only masters, id 0; every txmq node serves reads and writes.
        id: 0,
        endpoints: Some(rmq::Endpoints {
            scheme: scheme as i32,
            addresses: vec![rmq::Address {
                host: host.to_string(),
                port: port.parse().ok()?,
            }],
        }),
    })
}

/// The brokers of a route: this node first, then the others (duplicates, as when every node
/// advertises one Service name, and unparsable addresses left out).
pub fn brokers(own: &str, others: &[String]) -> Vec<rmq::Broker> {
    let mut addrs: Vec<&str> = vec![own];
    for other in others {
        if !addrs.contains(&other.as_str()) {
            addrs.push(other);
        }
    }
    addrs.into_iter().filter_map(broker).collect()
}

/// The message type a topic accepts.
pub fn accepted_type(kind: TopicKind) -> rmq::MessageType {
    match kind {
        TopicKind::Normal => rmq::MessageType::Normal,
        TopicKind::Transaction => rmq::MessageType::Transaction,
    }
}

/// The topic's queues on each broker, readable and writable.
pub fn message_queues(
    topic: &TopicMeta,
    requested: rmq::Resource,
    brokers: &[rmq::Broker],
) -> Vec<rmq::MessageQueue> {
    brokers
        .iter()
        .flat_map(|broker| {
            (0..topic.queues).map(|id| rmq::MessageQueue {
                topic: Some(requested.clone()),
                id: id as i32,
                permission: rmq::Permission::ReadWrite as i32,
                broker: Some(broker.clone()),
                accept_message_types: vec![accepted_type(topic.kind) as i32],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_is_a_broker_with_its_one_address() {
        let brokers = brokers(
            "127.0.0.1:8081",
            &[
                "127.0.0.2:8081".into(),
                "127.0.0.1:8081".into(),
                "bad".into(),
            ],
        );
        let names: Vec<&str> = brokers.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, vec!["txmq@127.0.0.1:8081", "txmq@127.0.0.2:8081"]);
        for b in &brokers {
            let e = b.endpoints.as_ref().expect("endpoints");
            assert_eq!(
                (b.id, e.scheme, e.addresses.len()),
                (0, rmq::AddressScheme::IPv4 as i32, 1)
            );
        }
        let named = broker("txmq-0.txmq:8081").expect("broker");
        let e = named.endpoints.expect("endpoints");
        assert_eq!(e.scheme, rmq::AddressScheme::DomainName as i32);
        assert_eq!(e.addresses[0].host, "txmq-0.txmq");
    }
}
