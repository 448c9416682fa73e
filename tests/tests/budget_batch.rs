//! Answers of calls that finish at once are held back to leave in one write only up to 8
//! answers or 64 KiB, and take their bytes of the replies' budget before they are queued: one
//! client that sends 64 `fill(4 MiB)` requests in one write and does not read costs the server
//! about its connection budget, not 256 MiB, and other clients are still answered.
//! (Found by a hostile review: the batch used to be built whole first, +494 MiB.)

use std::time::{Duration, Instant};

use rpc_core::wire::{self, Header, Kind};
use rpc_tests::{
    ProbeClient, ProbeProcess, TempDir, probe_method_id, raw_probe_connection, rss_kib,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_of_inline_answers_takes_the_server() {
    let dir = TempDir::new();
    let address = format!("unix://{}/batch.sock", dir.0.display());
    let server = ProbeProcess::spawn(&[&address]);
    server.expect_line("listening on");
    let pid = server.pid();
    let connection = raw_probe_connection(&address, 16 << 20).await;
    let (mut sender, receiver, _) = connection.split();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let frames = (1..=64u64)
        .map(|call_id| {
            let header = Header {
                kind: Kind::Request,
                method: probe_method_id("fill"),
                call_id,
            };
            wire::message_frame(header, None, &(4u64 << 20,)).unwrap()
        })
        .collect();
    sender.send_all(frames).await.unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let mut peak = before;
    while Instant::now() < until {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "server RSS {before} KiB before, peak {peak} KiB: +{} MiB for one client",
        (peak - before) / 1024
    );

    // Another client, well behaved: an `add` is answered at once... or not.
    let bystander = ProbeClient::connect(&address).await.unwrap();
    let started = Instant::now();
    let sum = tokio::time::timeout(Duration::from_secs(5), bystander.add(1, 2)).await;
    eprintln!(
        "bystander's add(1, 2): {sum:?} after {:?}",
        started.elapsed()
    );
    drop((sender, receiver));

    assert!(
        peak - before < 64 * 1024,
        "one client that does not read makes the server hold {} MiB (budget 8 MiB)",
        (peak - before) / 1024
    );
    assert!(
        matches!(sum, Ok(Ok(3))),
        "another client is not answered while one client does not read: {sum:?}"
    );
}
