//! `netem-delay --queue N --delay DURATION`: the delay half of the bad-network emulation on a
//! kernel without netem (`CONFIG_NET_SCH_NETEM` unset). Packets that an iptables rule sends
//! to NFQUEUE number `N` are held here and accepted `DURATION` after they arrived, in arrival
//! order: a constant delay, FIFO, as netem's `delay` without jitter.
//!
//! Prints `delaying queue N by DURATION` on stdout once bound. Exits when its standard input
//! closes (the test that started it is gone), so it never outlives the test; while it is not
//! running, the queued packets are dropped (the rule has no `--queue-bypass`), so a delay that
//! is not applied can never pass for one that is.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The longest sleep between two looks at the queue: how late a packet can be noticed.
const TICK: Duration = Duration::from_micros(250);

fn main() -> ExitCode {
    let mut queue_num = None;
    let mut delay = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--queue", Some(n)) => queue_num = n.parse::<u16>().ok(),
            ("--delay", Some(d)) => delay = idl_examples::cli::parse_duration(&d).ok(),
            _ => return usage(),
        }
    }
    let (Some(queue_num), Some(delay)) = (queue_num, delay) else {
        return usage();
    };
    std::thread::spawn(|| {
        // EOF or an error on stdin: the test is gone.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    match run(queue_num, delay) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netem-delay: queue {queue_num}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: netem-delay --queue N --delay DURATION");
    ExitCode::from(2)
}

fn run(queue_num: u16, delay: Duration) -> std::io::Result<()> {
    let mut queue = nfq::Queue::open()?;
    queue.bind(queue_num)?;
    // The headers suffice for a verdict: copying no payload keeps each held packet small.
    queue.set_copy_range(queue_num, 0)?;
    queue.set_queue_max_len(queue_num, 65_536)?;
    queue.set_nonblocking(true);
    println!("delaying queue {queue_num} by {delay:?}");
    std::io::stdout().flush()?;
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    loop {
        loop {
            match queue.recv() {
                Ok(mut message) => {
                    message.set_verdict(nfq::Verdict::Accept);
                    held.push_back((Instant::now() + delay, message));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, message) = held.pop_front().expect("a held packet");
            queue.verdict(message)?;
        }
        let next = held
            .front()
            .map_or(TICK, |(due, _)| due.saturating_duration_since(now));
        std::thread::sleep(next.min(TICK));
    }
}
