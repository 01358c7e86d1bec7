//! The load generator: keep-alive HTTP/1.1 connections that each run streams one after
//! another, timing the first body byte and the end of every stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What one stream took, seen from the client.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// From sending the request to the first byte of the body.
    pub(crate) ttfb: Duration,
    /// From sending the request to the end of the body.
    pub(crate) total: Duration,
    /// Body frames received (one per HTTP chunk): the layer must not merge or split them.
    pub(crate) frames: usize,
}

/// The request every stream sends (its body is not read by the stand-in upstream, but
/// it is forwarded like a real one).
const REQUEST_BODY: &str = r#"{"model":"claude-sonnet-4-5-20250929","max_tokens":4096,"stream":true,"messages":[{"role":"user","content":"Write a long story."}]}"#;

async fn connect(proxy: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One stream on `sender`; checks that every byte of the corpus arrived.
async fn stream(
    sender: &mut SendRequest<Full<Bytes>>,
    expect_bytes: usize,
) -> anyhow::Result<Timing> {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/v1/messages")
        .header(header::HOST, "proxy")
        .header(header::CONTENT_TYPE, "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from_static(REQUEST_BODY.as_bytes())))?;
    sender.ready().await?;
    let started = Instant::now();
    let response = sender.send_request(request).await?;
    if response.status() != StatusCode::OK {
        bail!("the proxy answered {}", response.status());
    }
    let mut body = response.into_body();
    let mut ttfb = None;
    let (mut bytes, mut frames) = (0, 0);
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            ttfb.get_or_insert_with(|| started.elapsed());
            bytes += data.len();
            frames += 1;
        }
    }
    let total = started.elapsed();
    if bytes != expect_bytes {
        bail!("a stream of {bytes} bytes, not {expect_bytes}");
    }
    Ok(Timing {
        ttfb: ttfb.context("a stream without a body")?,
        total,
        frames,
    })
}

/// Runs `cycles` cycles over `concurrency` workers, stopping early at `deadline`; returns
/// each finished stream's timing, per proxy.
///
/// A worker holds one keep-alive connection to every proxy; a cycle runs one stream
/// through each proxy in turn, in an order shuffled afresh every cycle (from the cycle's
/// number, so runs repeat). So every proxy serves the same number of streams, spread over
/// the same stretch of time, anything else the machine does in that stretch falls on all
/// of them alike, and no proxy always follows the same one: with a fixed rotation, an A/A
/// control (two plain proxies) read +0.9 % apart over 15 rounds.
pub(crate) async fn run(
    proxies: &[SocketAddr],
    cycles: usize,
    concurrency: usize,
    deadline: Instant,
    expect_bytes: usize,
) -> anyhow::Result<Vec<Vec<Timing>>> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let proxies = proxies.to_vec();
        workers.spawn(async move {
            let mut senders = Vec::with_capacity(proxies.len());
            for &proxy in &proxies {
                senders.push(connect(proxy).await?);
            }
            let mut timings = vec![Vec::new(); proxies.len()];
            loop {
                let cycle = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if cycle >= cycles || Instant::now() >= deadline {
                    break;
                }
                for i in shuffled(proxies.len(), cycle) {
                    let timing = tokio::time::timeout(
                        Duration::from_secs(10),
                        stream(&mut senders[i], expect_bytes),
                    )
                    .await
                    .with_context(|| format!("a stream through {} took over 10 s", proxies[i]))??;
                    timings[i].push(timing);
                }
            }
            anyhow::Ok(timings)
        });
    }
    let mut all: Vec<Vec<Timing>> = (0..proxies.len())
        .map(|_| Vec::with_capacity(cycles))
        .collect();
    while let Some(done) = workers.join_next().await {
        for (mine, theirs) in all.iter_mut().zip(done??) {
            mine.extend(theirs);
        }
    }
    Ok(all)
}

/// `0..n` in an order drawn from `seed` (Fisher–Yates with a SplitMix64 stream).
fn shuffled(n: usize, seed: usize) -> Vec<usize> {
    let mut state = seed as u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    order
}

/// A request to the proxy's flush path; returns when the proxy has written its records.
pub(crate) async fn flush(proxy: SocketAddr) -> anyhow::Result<()> {
    let stream = TcpStream::connect(proxy).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::builder()
        .uri(crate::servers::FLUSH_PATH)
        .header(header::HOST, "proxy")
        .body(Empty::new())?;
    let response = tokio::time::timeout(Duration::from_secs(60), sender.send_request(request))
        .await
        .context("flushing the proxy's writer took over 60 s")??;
    if response.status() != StatusCode::NO_CONTENT {
        bail!("flush answered {}", response.status());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shuffled;

    #[test]
    fn every_cycle_runs_every_proxy_once_and_the_orders_vary() {
        let orders: Vec<Vec<usize>> = (0..200).map(|cycle| shuffled(5, cycle)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3, 4]);
        }
        assert_eq!(orders, (0..200).map(|c| shuffled(5, c)).collect::<Vec<_>>());
        // Each proxy comes first, and right after proxy 0, about equally often.
        for proxy in 0..5 {
            let first = orders.iter().filter(|o| o[0] == proxy).count();
            assert!(
                (20..=60).contains(&first),
                "proxy {proxy} first {first} times"
            );
        }
        let after_0 = |p: usize| {
            orders
                .iter()
                .filter(|o| o.windows(2).any(|w| w == [0, p]))
                .count()
        };
        assert!(
            (1..5).all(|p| after_0(p) >= 25),
            "{:?}",
            (1..5).map(after_0).collect::<Vec<_>>()
        );
    }
}
