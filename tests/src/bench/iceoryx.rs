//! iceoryx2 request-response as a peer (feature `iceoryx2`): the same `add(i64, i64) -> i64`,
//! a request `[i64; 2]` and a reply `i64` in shared memory, its server in a process of its own
//! (`rpc-bench iceoryx2-server SERVICE`), its client in the measuring process.
//!
//! Both sides wait by polling, as iceoryx2's request-response has no blocking receive: they
//! spin for [`SPIN`], then yield the CPU between polls, so that a client and server pinned to
//! one CPU still take turns. That is the fastest way iceoryx2 offers without an extra event
//! service, and the same spin-then-give-way shape as the raw shm ping-pong.
//!
//! Several requests in flight: the service allows [`MAX_IN_FLIGHT`] active requests per
//! client, and the client holds that many `PendingResponse`s at once, polling them in turn and
//! sending a new request as soon as one is answered (one thread, one client port).

use serde::Serialize;

use super::stats::Latency;

/// How long a waiting side spins before it yields between polls.
pub const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// The most requests one client may have in flight.
pub const MAX_IN_FLIGHT: usize = 64;

/// iceoryx2's figures.
#[derive(Debug, Clone, Serialize)]
pub struct IceoryxResult {
    /// Sequential `add` calls.
    pub latency: Latency,
    /// Calls per second, one in flight.
    pub one_in_flight: f64,
    /// Calls per second with `in_flight_calls` requests outstanding from one client.
    pub in_flight: f64,
    /// How many requests were outstanding.
    pub in_flight_calls: usize,
}

#[cfg(feature = "iceoryx2")]
pub use imp::{measure, serve};

/// `rpc-bench iceoryx2-server`: fails, as this build has no iceoryx2.
#[cfg(not(feature = "iceoryx2"))]
pub fn serve(_service: &str) -> anyhow::Result<()> {
    anyhow::bail!("rpc-bench was built without the `iceoryx2` feature")
}

#[cfg(feature = "iceoryx2")]
mod imp {
    use std::ffi::OsString;
    use std::fmt::Debug;
    use std::io::Write;
    use std::time::{Duration, Instant};

    use anyhow::{anyhow, ensure};
    use iceoryx2::node::Node;
    use iceoryx2::pending_response::PendingResponse;
    use iceoryx2::port::client::Client;
    use iceoryx2::prelude::*;
    use iceoryx2::service::port_factory::request_response::PortFactory;

    use super::super::env::Env;
    use super::super::plan::Plan;
    use super::super::proc::{ChildGuard, cpu_args};
    use super::super::stats::{Latency, time_sync};
    use super::{IceoryxResult, MAX_IN_FLIGHT, SPIN};

    type Service = ipc::Service;
    type Request = [i64; 2];
    type Reply = i64;

    /// An iceoryx2 error as an [`anyhow::Error`] that says what failed.
    fn ice<T, E: Debug>(result: Result<T, E>, what: &str) -> anyhow::Result<T> {
        result.map_err(|e| anyhow!("iceoryx2: {what}: {e:?}"))
    }

    fn node() -> anyhow::Result<Node<Service>> {
        // Its warning that no config file was found (defaults are used) is noise here.
        set_log_level_from_env_or(LogLevel::Error);
        ice(NodeBuilder::new().create::<Service>(), "create a node")
    }

    fn open(
        node: &Node<Service>,
        name: &str,
    ) -> anyhow::Result<PortFactory<Service, Request, (), Reply, ()>> {
        let name = ice(ServiceName::new(name), "service name")?;
        ice(
            node.service_builder(&name)
                .request_response::<Request, Reply>()
                .max_active_requests_per_client(MAX_IN_FLIGHT)
                .open_or_create(),
            "open the request-response service",
        )
    }

    /// Polls with `poll` until it gives a value: spins for [`SPIN`], then yields between polls.
    fn wait_for<T>(mut poll: impl FnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            if let Some(value) = poll()? {
                return Ok(value);
            }
            polls += 1;
            if polls >= 64 && start.elapsed() >= SPIN {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Serves `add` on `service` until SIGTERM; prints `ready` once the server port exists.
    pub fn serve(service: &str) -> anyhow::Result<()> {
        let node = node()?;
        let factory = open(&node, service)?;
        let server = ice(factory.server_builder().create(), "create the server")?;
        let mut stdout = std::io::stdout();
        writeln!(stdout, "ready")?;
        stdout.flush()?;
        let mut idle_since: Option<Instant> = None;
        let mut idle_polls = 0u32;
        loop {
            match ice(server.receive(), "receive a request")? {
                Some(request) => {
                    idle_since = None;
                    let [a, b] = *request.payload();
                    ice(request.send_copy(a.wrapping_add(b)), "send the reply")?;
                }
                None => {
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    idle_polls = idle_polls.wrapping_add(1);
                    if since.elapsed() < SPIN {
                        std::hint::spin_loop();
                        continue;
                    }
                    // iceoryx2 turns SIGTERM into a flag that `wait` reports: stop then, so
                    // the node removes its shared memory.
                    if idle_polls.is_multiple_of(256) && node.wait(Duration::ZERO).is_err() {
                        return Ok(());
                    }
                    std::thread::yield_now();
                }
            }
        }
    }

    fn send(client: &Client<Service, Request, (), Reply, ()>, i: i64) -> anyhow::Result<Pending> {
        ice(client.send_copy([i, i]), "send a request")
    }

    type Pending = PendingResponse<Service, Request, (), Reply, ()>;

    fn reply(pending: &Pending) -> anyhow::Result<Option<Reply>> {
        Ok(ice(pending.receive(), "receive a reply")?.map(|r| *r.payload()))
    }

    fn call(client: &Client<Service, Request, (), Reply, ()>, i: u64) -> anyhow::Result<()> {
        let i = i as i64;
        let pending = send(client, i)?;
        let sum = wait_for(|| reply(&pending))?;
        ensure!(
            sum == i.wrapping_mul(2),
            "iceoryx2 add({i}, {i}) returned {sum}"
        );
        Ok(())
    }

    /// Starts `rpc-bench iceoryx2-server` and measures it from this process.
    pub fn measure(env: &Env, plan: &Plan) -> anyhow::Result<IceoryxResult> {
        let service = format!("rpc-bench/{}", env.unique("add"));
        let mut args: Vec<OsString> = vec!["iceoryx2-server".into(), service.clone().into()];
        args.extend(cpu_args(env.cpus.server));
        let mut server = ChildGuard::spawn(&env.exe, &args, false, "iceoryx2 server")?;
        let mut stdout = server.take_stdout()?;
        let line = server.read_line_within(&mut stdout, plan.phase_limit)?;
        ensure!(line == "ready", "iceoryx2 server: unexpected {line:?}");

        let node = node()?;
        let factory = open(&node, &service)?;
        let client = ice(
            factory
                .client_builder()
                .max_active_requests(MAX_IN_FLIGHT)
                .create(),
            "create the client",
        )?;
        let latency: Latency = time_sync(plan.warmup, plan.latency_calls, |i| call(&client, i))?;
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < plan.throughput_time {
            call(&client, calls)?;
            calls += 1;
        }
        let one_in_flight = calls as f64 / start.elapsed().as_secs_f64();
        let in_flight_calls = plan.in_flight.min(MAX_IN_FLIGHT);
        let in_flight = in_flight(&client, in_flight_calls, plan.throughput_time)?;
        drop(client);
        drop(server);
        Ok(IceoryxResult {
            latency,
            one_in_flight,
            in_flight,
            in_flight_calls,
        })
    }

    /// Calls per second with `count` requests outstanding, each answered one replaced by a new
    /// request at once, for `time`.
    fn in_flight(
        client: &Client<Service, Request, (), Reply, ()>,
        count: usize,
        time: Duration,
    ) -> anyhow::Result<f64> {
        let mut next = 0i64;
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            slots.push((next, send(client, next)?));
            next += 1;
        }
        let start = Instant::now();
        let mut done = 0u64;
        let mut idle = 0u32;
        while start.elapsed() < time {
            let mut progressed = false;
            for slot in &mut slots {
                if let Some(sum) = reply(&slot.1)? {
                    ensure!(sum == slot.0.wrapping_mul(2), "iceoryx2 add: wrong sum");
                    done += 1;
                    progressed = true;
                    *slot = (next, send(client, next)?);
                    next += 1;
                }
            }
            if progressed {
                idle = 0;
            } else {
                idle += 1;
                if idle >= 64 {
                    std::thread::yield_now();
                }
            }
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    }
}
