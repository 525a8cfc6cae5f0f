//! Authentication and authorization on real `txmq serve` processes, TLS on: the bootstrap
//! administrator, users and rights made through the CLI and the client API, denials with the
//! right codes, rights that change on every node at once and survive a leader kill, and no
//! password in any log.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use txmq_client::{
    AccessRight, Client, ClientError, ClientOptions, EndTransactionRequest, ReceiveRequest,
    SendHalfRequest, SendRequest, SendRequestExt, TopicType,
};
use txmq_cluster_tests::secure::{self, ADMIN_PASSWORD};
use txmq_cluster_tests::{Cluster, ClusterOptions, wait_for};

const ALICE_PASSWORD: &str = "alice-password-1";

fn options(certs: &Path, user: &str, password: &str) -> Result<ClientOptions> {
    Ok(ClientOptions {
        retry_deadline: Duration::from_secs(3),
        ..secure::client_options(certs, user, password)?
    })
}

/// A TLS cluster with authentication on; the harness's own client is the administrator.
async fn secure_cluster(dir: &Path) -> Result<Cluster> {
    let secured = secure::secure(dir)?;
    let options = ClusterOptions {
        extra_args: secured.serve_flags,
        client: secured.admin_client,
        ..Default::default()
    };
    Cluster::start(3, options).await
}

/// `txmq` with TLS and the given credentials against the cluster.
fn cli(
    cluster: &Cluster,
    dir: &Path,
    user: &str,
    password: &str,
    args: &[&str],
) -> Result<(bool, String)> {
    let ca = dir.join("certs/ca.pem").display().to_string();
    let endpoints = cluster.endpoints_csv();
    let mut full = vec![
        "--endpoints",
        &endpoints,
        "--tls-ca",
        &ca,
        "--user",
        user,
        "--password",
        password,
        "--output",
        "json",
    ];
    full.extend_from_slice(args);
    cluster.cli(&full)
}

fn denied(result: Result<impl std::fmt::Debug, ClientError>, code: &str, what: &str) -> Result<()> {
    match result {
        Err(e) if e.code == code => Ok(()),
        other => anyhow::bail!("{what}: expected {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_rights_decide_what_each_caller_may_do_on_every_node() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut cluster = secure_cluster(dir.path()).await?;
    let certs = dir.path().join("certs");
    let admin = cluster.client()?;
    admin
        .create_topic("orders-eu", TopicType::Normal, 2)
        .await?;
    admin
        .create_topic("orders-tx", TopicType::Transaction, 1)
        .await?;
    admin.create_topic("pay", TopicType::Normal, 1).await?;

    // Users and rights through the CLI, as an operator would.
    let (ok, out) = cli(
        &cluster,
        dir.path(),
        "admin",
        ADMIN_PASSWORD,
        &["user", "create", "alice", "--new-password", ALICE_PASSWORD],
    )?;
    ensure!(ok, "user create: {out}");
    for right in [
        ["--produce", "orders*", "", ""],
        ["--consume", "orders*", "--group", "g*"],
    ] {
        let mut args = vec!["acl", "grant", "alice"];
        args.extend(right.iter().filter(|a| !a.is_empty()));
        let (ok, out) = cli(&cluster, dir.path(), "admin", ADMIN_PASSWORD, &args)?;
        ensure!(ok, "acl grant: {out}");
    }
    let (ok, out) = cli(
        &cluster,
        dir.path(),
        "admin",
        ADMIN_PASSWORD,
        &["acl", "list", "alice"],
    )?;
    ensure!(
        ok && out.contains("--produce orders*") && out.contains("--consume orders* --group g*"),
        "{out}"
    );
    ensure!(
        !out.contains(ALICE_PASSWORD) && !out.contains("argon2"),
        "a secret in `acl list`: {out}"
    );

    let alice = Client::with_options(
        cluster.endpoints_csv().split(','),
        options(&certs, "alice", ALICE_PASSWORD)?,
    )?;
    alice.send(SendRequest::new("orders-eu", "allowed")).await?;
    let received = alice
        .receive(ReceiveRequest {
            group: "g1".into(),
            topic: "orders-eu".into(),
            max: 10,
            ..Default::default()
        })
        .await?;
    ensure!(
        received.iter().any(|m| m.body.as_ref() == b"allowed"),
        "{received:?}"
    );
    let half = alice
        .send_half(SendHalfRequest {
            topic: "orders-tx".into(),
            group: "pg".into(),
            body: b"t".to_vec().into(),
            ..Default::default()
        })
        .await?;
    alice
        .end_transaction(EndTransactionRequest {
            transaction_id: half.transaction_id.clone(),
            group: "pg".into(),
            decision: 1,
            operator: false,
        })
        .await?;

    alice_is_denied_outside_her_rights(&alice).await?;
    strangers_are_unauthenticated(&cluster, &certs).await?;
    let (ok, out) = cli(
        &cluster,
        dir.path(),
        "alice",
        ALICE_PASSWORD,
        &["topic", "create", "x", "--type", "normal"],
    )?;
    ensure!(
        !ok && out.contains("permission_denied") && out.contains("--admin"),
        "{out}"
    );

    rights_change_everywhere_and_survive_a_leader_kill(&mut cluster, &certs).await?;
    for node in cluster.nodes.values() {
        let log = std::fs::read_to_string(&node.log_path)?;
        ensure!(
            !log.contains(ALICE_PASSWORD) && !log.contains(ADMIN_PASSWORD),
            "a password in {}",
            node.log_path.display()
        );
        ensure!(
            !log.contains("$argon2"),
            "a password hash in {}",
            node.log_path.display()
        );
    }
    Ok(())
}

async fn alice_is_denied_outside_her_rights(alice: &Client) -> Result<()> {
    denied(
        alice.send(SendRequest::new("pay", "no")).await,
        "permission_denied",
        "send to another topic",
    )?;
    let other_group = ReceiveRequest {
        group: "h".into(),
        topic: "orders-eu".into(),
        max: 1,
        ..Default::default()
    };
    denied(
        alice.receive(other_group).await,
        "permission_denied",
        "receive in another group",
    )?;
    denied(
        alice.create_topic("new", TopicType::Normal, 1).await,
        "permission_denied",
        "topic create",
    )?;
    denied(
        alice.remove_node(3).await,
        "permission_denied",
        "remove-node",
    )?;
    let forced = EndTransactionRequest {
        transaction_id: "T000000000000000000000001".into(),
        group: "pg".into(),
        decision: 1,
        operator: true,
    };
    denied(
        alice.end_transaction(forced).await,
        "permission_denied",
        "operator decision",
    )?;
    denied(
        alice.create_user("mallory", "mallory-password").await,
        "permission_denied",
        "user create",
    )?;
    denied(alice.list_users().await, "permission_denied", "user list")?;
    let whoami = alice.who_am_i().await?;
    ensure!(
        whoami.name == "alice" && whoami.rights.len() == 2,
        "{whoami:?}"
    );
    Ok(())
}

async fn strangers_are_unauthenticated(cluster: &Cluster, certs: &Path) -> Result<()> {
    let endpoints = cluster.endpoints_csv();
    let anonymous = Client::with_options(endpoints.split(','), options(certs, "", "")?)?;
    denied(
        anonymous.list_topics().await,
        "unauthenticated",
        "anonymous",
    )?;
    let wrong = Client::with_options(
        endpoints.split(','),
        options(certs, "alice", "not-her-password")?,
    )?;
    denied(
        wrong.list_topics().await,
        "unauthenticated",
        "wrong password",
    )?;
    let nobody = Client::with_options(
        endpoints.split(','),
        options(certs, "nobody", ALICE_PASSWORD)?,
    )?;
    denied(
        nobody.list_topics().await,
        "unauthenticated",
        "unknown user",
    )?;
    Ok(())
}

/// A revoke made through one node holds on every node, and after the leader is killed.
async fn rights_change_everywhere_and_survive_a_leader_kill(
    cluster: &mut Cluster,
    certs: &Path,
) -> Result<()> {
    let admin = cluster.client()?;
    let produce = AccessRight {
        kind: "produce".into(),
        topics: "orders*".into(),
        groups: String::new(),
    };
    admin.revoke("alice", produce.clone()).await?;
    let per_node = |cluster: &Cluster, id: u64| -> Result<Client> {
        let node = cluster.nodes.get(&id).context("node")?;
        Ok(Client::with_options(
            [node.client_addr.as_str()],
            options(certs, "alice", ALICE_PASSWORD)?,
        )?)
    };
    for id in 1..=3 {
        let alice = per_node(cluster, id)?;
        wait_for(
            &format!("node {id} to apply the revoke"),
            Duration::from_secs(10),
            || {
                let alice = alice.clone();
                async move {
                    let r = alice.send(SendRequest::new("orders-eu", "revoked?")).await;
                    r.err().filter(|e| e.code == "permission_denied")
                }
            },
        )
        .await?;
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    cluster.node(leader).kill();
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let survivor = (1..=3).find(|id| *id != leader).context("a survivor")?;
    let alice = per_node(cluster, survivor)?;
    denied(
        alice
            .send(SendRequest::new("orders-eu", "still revoked"))
            .await,
        "permission_denied",
        "after failover",
    )?;
    let consume = ReceiveRequest {
        group: "g2".into(),
        topic: "orders-eu".into(),
        max: 1,
        ..Default::default()
    };
    alice
        .receive(consume)
        .await
        .context("consume survives the failover")?;
    cluster.client()?.grant("alice", produce).await?;
    wait_for("the grant", Duration::from_secs(10), || {
        let alice = alice.clone();
        async move {
            alice
                .send(SendRequest::new("orders-eu", "again"))
                .await
                .ok()
        }
    })
    .await?;
    Ok(())
}
