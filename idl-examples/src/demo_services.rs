//! The second part of `rpc-demo`: the Calculator and the key-value store served together on
//! one listener, a client of a service that listener lacks, and the three kinds of streams.

use std::time::{Duration, Instant};

use rpc_core::{RpcError, StreamExt, Streaming};

use crate::calculator::{Calc, CalculatorClient, CalculatorServer};
use crate::kv::{Change, KvClient, KvServer, KvStore};

/// One row of the demo: what was shown, where, and what came of it.
#[derive(Debug)]
pub struct ServiceRow {
    /// What the row shows.
    pub what: &'static str,
    /// The address used.
    pub address: String,
    /// What happened, in words, or the error.
    pub outcome: Result<String, RpcError>,
}

const ENTRIES: usize = 1000;

/// Serves both services on `address` (and the store alone on `kv_only`), then runs each row.
pub async fn rows(address: &str, kv_only: &str) -> Result<Vec<ServiceRow>, RpcError> {
    let both = rpc_core::Server::new()
        .add(CalculatorServer::new(Calc))
        .add(KvServer::new(KvStore::default()))
        .listen(&[address])
        .await?;
    let alone = rpc_core::Server::new()
        .add(KvServer::new(KvStore::default()))
        .listen(&[kv_only])
        .await?;
    let (address, kv_only) = (both.local_address(), alone.local_address());
    let row = |what, address: &str, outcome| ServiceRow {
        what,
        address: address.to_owned(),
        outcome,
    };
    let rows = vec![
        row(
            "two services, one listener",
            &address,
            both_services(&address).await,
        ),
        row(
            "a service the listener lacks",
            &kv_only,
            missing_service(&kv_only).await,
        ),
        row("server streaming (list)", &address, listing(&address).await),
        row(
            "server streaming (watch)",
            &address,
            watching(&address).await,
        ),
        row("client streaming", &address, client_stream(&address).await),
    ];
    both.shutdown().await;
    alone.shutdown().await;
    Ok(rows)
}

async fn both_services(address: &str) -> Result<String, RpcError> {
    let calc = CalculatorClient::connect(address).await?;
    let kv = KvClient::connect(address).await?;
    let sum = calc.add(2, 3).await?;
    kv.put("greeting".into(), b"hello".to_vec()).await?;
    let value = kv.get("greeting".into()).await?.unwrap_or_default();
    Ok(format!(
        "Calculator add(2, 3) = {sum}; Kv get(\"greeting\") = {:?}",
        String::from_utf8_lossy(&value)
    ))
}

async fn missing_service(address: &str) -> Result<String, RpcError> {
    match CalculatorClient::connect(address).await {
        Ok(_) => Err(RpcError::Protocol(
            "a Kv-only server accepted a Calculator client".into(),
        )),
        Err(error @ RpcError::UnknownService { .. }) => {
            Ok(format!("refused as it should be: {error}"))
        }
        Err(other) => Err(other),
    }
}

async fn listing(address: &str) -> Result<String, RpcError> {
    let kv = KvClient::connect(address).await?;
    for i in 0..ENTRIES {
        kv.put(format!("list/{i:04}"), vec![b'x'; 100]).await?;
    }
    let started = Instant::now();
    let mut entries = kv.list("list/".into()).await?;
    let mut count = 0;
    while let Some(entry) = entries.next().await {
        entry?;
        count += 1;
    }
    Ok(format!(
        "{count} entries streamed in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    ))
}

async fn watching(address: &str) -> Result<String, RpcError> {
    let kv = KvClient::connect(address).await?;
    let mut changes = kv.watch("watch/".into()).await?;
    let writer = kv.with_timeout(Some(Duration::from_secs(5)));
    // A first change shows the watch is live (it sees every change made after it returns);
    // written again if it does not show within 100 ms, to bound the wait.
    let mut first = None;
    for _ in 0..50 {
        writer.put("watch/ready".into(), Vec::new()).await?;
        if let Ok(change) = tokio::time::timeout(Duration::from_millis(100), changes.next()).await {
            first = Some(change.ok_or_else(|| RpcError::Protocol("the watch ended".into()))??);
            break;
        }
    }
    if first.is_none() {
        return Err(RpcError::Protocol(
            "the watch reported nothing in 5 s".into(),
        ));
    }
    // Drain the repeats of the first change, then make the ones to show.
    while let Ok(Some(change)) =
        tokio::time::timeout(Duration::from_millis(100), changes.next()).await
    {
        change?;
    }
    writer.put("watch/a".into(), b"1".to_vec()).await?;
    writer.put("other/b".into(), b"2".to_vec()).await?;
    writer.put("watch/c".into(), b"3".to_vec()).await?;
    writer.delete("watch/a".into()).await?;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let change = tokio::time::timeout(Duration::from_secs(5), changes.next())
            .await
            .map_err(|_| RpcError::Protocol("no change arrived within 5 s".into()))?
            .ok_or_else(|| RpcError::Protocol("the watch ended".into()))??;
        seen.push(match change {
            Change::Put { key, value } => format!("put {key}={}", String::from_utf8_lossy(&value)),
            Change::Deleted { key } => format!("deleted {key}"),
        });
    }
    drop(changes);
    Ok(format!("{} (other/b filtered out)", seen.join(", ")))
}

async fn client_stream(address: &str) -> Result<String, RpcError> {
    let calc = CalculatorClient::connect(address).await?;
    let total = calc
        .sum_stream(Streaming::from_iter(1..=100_000i64))
        .await?;
    Ok(format!("sum_stream(1..=100000) = {total}"))
}
