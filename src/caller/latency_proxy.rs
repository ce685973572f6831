//! A TCP proxy that adds network distance to a loopback fake server: every byte is delayed by a
//! one-way latency, and each new connection first pays a set-up cost (TCP + TLS handshakes, token
//! exchange on a real cloud link). This is what pre-connecting saves, so benchmarks of it need it.
//! Optional jitter delays each chunk a further 0..=jitter (order kept, as TCP does): `kav call` and
//! `kav loadgen --rtt/--jitter` put the simulated Twilio side of the link behind one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

/// Chunks in flight per direction; a full pipe stops reading (backpressure, no growth).
const IN_FLIGHT_CHUNKS: usize = 256;

pub struct LatencyProxy {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

/// How a proxied link delays each chunk, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkDelay {
    pub one_way: Duration,
    /// Each chunk waits a further uniform 0..=jitter (never overtaking an earlier chunk).
    pub jitter: Duration,
}

impl LatencyProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`.
    pub async fn start(
        upstream: SocketAddr,
        one_way: Duration,
        connect_cost: Duration,
    ) -> std::io::Result<Self> {
        let delay = LinkDelay {
            one_way,
            jitter: Duration::ZERO,
        };
        Self::start_with_jitter(upstream, delay, connect_cost, 0).await
    }

    /// As [`start`](Self::start), with jitter drawn from a sequence seeded by `seed`.
    pub async fn start_with_jitter(
        upstream: SocketAddr,
        delay: LinkDelay,
        connect_cost: Duration,
        seed: u64,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst) as u64;
                let seed = seed.wrapping_add(n.wrapping_mul(2));
                tokio::spawn(async move {
                    tokio::time::sleep(connect_cost).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, delay, seed), pipe(sr, cw, delay, seed + 1));
                });
            }
        });
        Ok(Self {
            addr,
            connections,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// splitmix64: a small seeded sequence (network jitter in the proxy and in test harnesses).
pub fn next_rand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Copies `from` to `to`, each chunk delivered `one_way` (+ jitter) after it was read, in order.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: LinkDelay, mut seed: u64) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Bytes)>(IN_FLIGHT_CHUNKS);
    let jitter_us = delay.jitter.as_micros() as u64;
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut last = Instant::now();
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let extra = Duration::from_micros(next_rand(&mut seed) % (jitter_us + 1));
                    let due = (Instant::now() + delay.one_way + extra).max(last);
                    last = due;
                    if tx
                        .send((due, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn bytes_arrive_intact_and_no_sooner_than_the_added_latency() {
        let upstream = echo_server().await;
        let one_way = Duration::from_millis(40);
        let connect_cost = Duration::from_millis(100);
        let proxy = LatencyProxy::start(upstream, one_way, connect_cost)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = s.split();
        let send = async {
            w.write_all(&payload).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = r.read_to_end(&mut back);
        let (_, got) = tokio::join!(send, recv);
        got.unwrap();
        assert_eq!(back, payload, "order and content preserved");
        // A lower bound only: the proxy must delay, how fast the machine is does not matter.
        assert!(started.elapsed() >= connect_cost + 2 * one_way);
        assert_eq!(proxy.connections(), 1);
    }
}
