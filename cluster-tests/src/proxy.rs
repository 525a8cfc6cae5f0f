//! A fault-injecting TCP proxy for one direction of one peer link (node A dialing node B).
//! Cutting it drops every open connection and refuses new ones until it is healed, so a
//! partition can cut links both ways or one way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct LinkProxy {
    pub addr: String,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut: open connections watch it and close.
    epoch: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl LinkProxy {
    pub async fn start(upstream: String) -> Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let (epoch, _) = watch::channel(0u64);
        let task = tokio::spawn(accept_loop(listener, upstream, cut.clone(), epoch.clone()));
        Ok(LinkProxy {
            addr,
            cut,
            epoch,
            task,
        })
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.epoch.send_modify(|e| *e += 1);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    cut: Arc<AtomicBool>,
    epoch: watch::Sender<u64>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let upstream = upstream.clone();
        let mut changed = epoch.subscribe();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                return;
            };
            // Loopback self-connect (source port = destination port while nothing listens):
            // never forward into ourselves.
            if outbound.local_addr().ok() == outbound.peer_addr().ok() {
                return;
            }
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = changed.changed() => {}
            }
        });
    }
}
