//! Transport security on real `txmq serve` processes: TLS on the client port, mutual TLS or a
//! cluster secret on the peer port, and certificates rotated by replacing their files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use txmq_client::{Client, ClientOptions, ClientTls, SendRequest, SendRequestExt, TopicType};
use txmq_cluster_tests::secure::create_certs;
use txmq_cluster_tests::{Cluster, ClusterOptions, wait_for};
use txmq_proto::peer::NodeStatusRequest;
use txmq_proto::peer::peer_client::PeerClient;

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn client_tls(dir: &Path) -> Result<ClientTls> {
    Ok(ClientTls {
        ca_pem: std::fs::read(dir.join("ca.pem"))?,
        server_name: None,
        identity: None,
    })
}

/// `txmq serve` flags for TLS on both ports with the certificates in `dir`.
fn tls_flags(dir: &Path) -> Vec<String> {
    [
        ("--tls-cert", "node.pem"),
        ("--tls-key", "node.key"),
        ("--peer-tls-cert", "node.pem"),
        ("--peer-tls-key", "node.key"),
        ("--peer-tls-ca", "ca.pem"),
    ]
    .iter()
    .flat_map(|(flag, name)| [flag.to_string(), file(dir, name)])
    .collect()
}

async fn tls_cluster(certs: &Path) -> Result<Cluster> {
    let options = ClusterOptions {
        extra_args: tls_flags(certs),
        client: ClientOptions {
            tls: Some(client_tls(certs)?),
            ..Default::default()
        },
        ..Default::default()
    };
    Cluster::start(3, options).await
}

/// A TLS client of the peer port at `addr`, presenting the client certificate of `identity`.
async fn peer_rpc_with(
    addr: &str,
    trust: &Path,
    identity: &Path,
) -> Result<PeerClient<tonic::transport::Channel>> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(trust.join("ca.pem"))?))
        .identity(Identity::from_pem(
            std::fs::read(identity.join("client.pem"))?,
            std::fs::read(identity.join("client.key"))?,
        ));
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_lazy();
    Ok(PeerClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_only_clients_that_trust_it_and_peers_it_trusts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (certs, stranger) = (dir.path().join("ca"), dir.path().join("other-ca"));
    create_certs(&certs)?;
    create_certs(&stranger)?;
    let mut cluster = tls_cluster(&certs).await?;
    let client = cluster.client()?;
    client.create_topic("secure", TopicType::Normal, 1).await?;
    let sent = client.send(SendRequest::new("secure", "over tls")).await?;
    ensure!(!sent.message_id.is_empty());

    let endpoints = cluster.endpoints_csv();
    let (ok, out) = cluster.cli(&["--endpoints", &endpoints, "cluster", "status"])?;
    ensure!(!ok, "plaintext to a TLS port worked: {out}");
    let plaintext = Client::with_options(
        endpoints.split(','),
        ClientOptions {
            retry_deadline: Duration::from_secs(1),
            ..Default::default()
        },
    )?;
    let refused = plaintext
        .cluster_status()
        .await
        .err()
        .context("plaintext answered")?;
    ensure!(refused.message.contains("--tls-ca"), "no hint: {refused}");

    let wrong_ca = Client::with_options(
        endpoints.split(','),
        ClientOptions {
            retry_deadline: Duration::from_secs(1),
            tls: Some(client_tls(&stranger)?),
            ..Default::default()
        },
    )?;
    let refused = wrong_ca
        .cluster_status()
        .await
        .err()
        .context("untrusted server used")?;
    ensure!(refused.message.contains("certificate"), "{refused}");

    let peer_addr = cluster.nodes[&1].peer_addr.clone();
    let mut stranger_peer = peer_rpc_with(&peer_addr, &certs, &stranger).await?;
    let answer = stranger_peer.node_status(NodeStatusRequest {}).await;
    ensure!(
        answer.is_err(),
        "the peer port answered a peer with another CA's certificate"
    );
    let mut member = peer_rpc_with(&peer_addr, &certs, &certs).await?;
    let status = member.node_status(NodeStatusRequest {}).await?.into_inner();
    ensure!(status.id == 1, "{status:?}");
    ports_keep_their_rpcs_apart(&cluster, &certs).await
}

/// Over TLS as in plaintext, the peer port serves no client RPC and the client port no peer
/// RPC.
async fn ports_keep_their_rpcs_apart(cluster: &Cluster, certs: &Path) -> Result<()> {
    let node = &cluster.nodes[&1];
    let to_peer_port = Client::with_options(
        [node.peer_addr.as_str()],
        ClientOptions {
            retry_deadline: Duration::from_secs(1),
            tls: Some(ClientTls {
                identity: Some((
                    std::fs::read(certs.join("client.pem"))?,
                    std::fs::read(certs.join("client.key"))?,
                )),
                ..client_tls(certs)?
            }),
            ..Default::default()
        },
    )?;
    let refused = to_peer_port
        .cluster_status()
        .await
        .err()
        .context("peer port served a client RPC")?;
    ensure!(refused.code == "unimplemented", "{refused:?}");
    let mut to_client_port = peer_rpc_with(&node.client_addr, certs, certs).await?;
    let refused = to_client_port
        .node_status(NodeStatusRequest {})
        .await
        .err()
        .context("client port served a peer RPC")?;
    ensure!(refused.code() == tonic::Code::Unimplemented, "{refused:?}");
    Ok(())
}

/// Replacing the files rotates the certificates of both ports while clients keep sending: the
/// client port moves to a certificate from a new CA (so the test can tell the new certificate
/// is served), the peers to fresh certificates of their CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_by_replacing_their_files_under_load() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (client_certs, peer_certs, next) = (
        dir.path().join("client"),
        dir.path().join("peer"),
        dir.path().join("next"),
    );
    create_certs(&client_certs)?;
    create_certs(&peer_certs)?;
    create_certs(&next)?;
    let mut flags = tls_flags(&peer_certs);
    flags[1] = file(&client_certs, "node.pem");
    flags[3] = file(&client_certs, "node.key");
    let options = ClusterOptions {
        extra_args: flags,
        client: ClientOptions {
            tls: Some(client_tls(&client_certs)?),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    client.create_topic("rotate", TopicType::Normal, 2).await?;
    let load = SendLoad::start(client.clone());

    create_certs(&peer_certs)?;
    replace(&next.join("node.pem"), &client_certs.join("node.pem"))?;
    replace(&next.join("node.key"), &client_certs.join("node.key"))?;
    let after = Client::with_options(
        cluster.endpoints_csv().split(','),
        ClientOptions {
            retry_deadline: Duration::from_secs(1),
            tls: Some(client_tls(&next)?),
            ..Default::default()
        },
    )?;
    wait_for(
        "the new certificate served",
        Duration::from_secs(20),
        || {
            let after = after.clone();
            async move { after.cluster_status().await.ok() }
        },
    )
    .await?;
    // The peers reloaded too (checked every 2 s); sends must go on through the change.
    let before = load.sent();
    wait_for(
        "sends going on after the rotation",
        Duration::from_secs(20),
        || {
            let sent = load.sent();
            async move { (sent > before + 20).then_some(()) }
        },
    )
    .await?;
    let failures = load.stop().await;
    ensure!(
        failures.is_empty(),
        "sends failed during the rotation: {failures:?}"
    );
    let sent = after
        .send(SendRequest::new("rotate", "with the new CA"))
        .await?;
    ensure!(!sent.message_id.is_empty());
    Ok(())
}

/// Copies `from` over `to` the way Kubernetes updates a Secret: a new file renamed into place.
fn replace(from: &Path, to: &Path) -> Result<()> {
    let staged: PathBuf = to.with_extension("staged");
    std::fs::copy(from, &staged)?;
    std::fs::rename(&staged, to)?;
    Ok(())
}

/// A background loop of sends, counting successes and keeping failures.
struct SendLoad {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl SendLoad {
    fn start(client: Client) -> SendLoad {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (sent.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut failures = Vec::new();
            while !halt.load(Ordering::Relaxed) {
                match client.send(SendRequest::new("rotate", "load")).await {
                    Ok(_) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
                tokio::task::yield_now().await;
            }
            failures
        });
        SendLoad { sent, stop, task }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_else(|e| vec![e.to_string()])
    }
}

/// Without peer TLS, a cluster secret keeps strangers off the peer port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_secret_refuses_peers_that_do_not_know_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "4f1c2d3e5a6b7c8d9e0f1a2b3c4d5e6f\n")?;
    let options = ClusterOptions {
        extra_args: vec!["--cluster-secret-file".into(), secret.display().to_string()],
        ..Default::default()
    };
    let mut cluster = Cluster::start(3, options).await?;
    let client = cluster.client()?;
    client.create_topic("shared", TopicType::Normal, 1).await?;
    client.send(SendRequest::new("shared", "ok")).await?;
    let peer = format!("http://{}", cluster.nodes[&2].peer_addr);
    let mut stranger = PeerClient::connect(peer).await?;
    match stranger.node_status(NodeStatusRequest {}).await {
        Ok(_) => bail!("the peer port answered without the cluster secret"),
        Err(status) => ensure!(status.code() == tonic::Code::Unauthenticated, "{status:?}"),
    }
    let open = Cluster::start(1, ClusterOptions::default()).await?;
    ensure!(
        open.nodes[&1].log().contains("THE PEER PORT IS OPEN"),
        "no warning about an open peer port"
    );
    Ok(())
}
