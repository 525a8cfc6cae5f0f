//! Backup and restore of a whole cluster outside Kubernetes, as docs/operations.md describes
//! it: stop every node, copy every data directory, start again; to restore, stop every node,
//! put every copy back, start. The cluster comes back exactly as it was at the backup.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use txmq_client::{Client, SendRequest, TopicType};
use txmq_cluster_tests::{Cluster, ClusterOptions, ids_served_by};

async fn send_n(client: &Client, tag: &str, n: usize) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    for i in 0..n {
        let body = format!("{tag}-{i}").into_bytes().into();
        let req = SendRequest {
            topic: "orders".into(),
            body,
            ..Default::default()
        };
        ids.insert(client.send(req).await?.message_id);
    }
    Ok(ids)
}

/// `cp -a` of a data directory.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()?;
    ensure!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
    Ok(())
}

/// Stops every node (SIGTERM, as an operator would) and waits for each to exit.
fn stop_all(cluster: &mut Cluster) -> Result<()> {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in &ids {
        cluster.node(*id).terminate();
    }
    for id in ids {
        cluster.node(id).wait_exit(Duration::from_secs(20))?;
    }
    Ok(())
}

fn start_all(cluster: &mut Cluster) -> Result<()> {
    let bin = cluster.bin.clone();
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    for id in ids {
        cluster.node(id).start(&bin)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restored_from_a_backup_is_the_cluster_at_the_backup() -> Result<()> {
    let mut cluster = Cluster::start(3, ClusterOptions::default()).await?;
    let client = cluster.client()?;
    client.create_topic("orders", TopicType::Normal, 2).await?;
    let before = send_n(&client, "before", 20).await?;

    // Phase 1: the backup — every node stopped, every data directory copied.
    stop_all(&mut cluster)?;
    let backup = tempfile::tempdir()?;
    for node in cluster.nodes.values() {
        copy_tree(
            &node.data_dir,
            &backup.path().join(format!("node-{}", node.id)),
        )?;
    }
    start_all(&mut cluster)?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let after = send_n(&client, "after", 10).await?;

    // Phase 2: the restore — every node stopped, every copy put back, started again.
    stop_all(&mut cluster)?;
    for node in cluster.nodes.values() {
        std::fs::remove_dir_all(&node.data_dir)?;
        copy_tree(
            &backup.path().join(format!("node-{}", node.id)),
            &node.data_dir,
        )?;
    }
    start_all(&mut cluster)?;
    cluster.wait_for_leader(Duration::from_secs(30)).await?;

    // Every node serves exactly what was acknowledged before the backup, and the cluster
    // writes again.
    for id in [1, 2, 3] {
        let c = cluster.client_of(id)?;
        let served =
            txmq_cluster_tests::wait_for("the restored messages", Duration::from_secs(20), || {
                let c = c.clone();
                async move {
                    ids_served_by(&c, "orders")
                        .await
                        .filter(|ids| ids.len() == 20)
                }
            })
            .await
            .with_context(|| format!("node {id}"))?;
        ensure!(
            served == before,
            "node {id} serves other messages after the restore"
        );
        ensure!(served.is_disjoint(&after));
    }
    send_n(&client, "restored", 1).await?;
    Ok(())
}
