//! `rpc-bench`: the framework per transport against raw OS mechanisms and tarpc, client and
//! server in separate processes. See `rpc_tests::bench` and `rpc-bench --help`.

use std::process::ExitCode;

use clap::Parser;
use rpc_tests::bench::cli::{ChildCommand, Cli};
use rpc_tests::bench::{child, iceoryx, load, logging, proc, raw, run, tarpc_svc};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let result = match &cli.child {
        None => run::run(&cli.run),
        Some(command) => child_main(command).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|error| {
        eprintln!("rpc-bench: {error:#}");
        ExitCode::FAILURE
    })
}

/// Runs one of the hidden child roles.
fn child_main(command: &ChildCommand) -> anyhow::Result<()> {
    match command {
        ChildCommand::Serve {
            listen,
            max_frame,
            cpu,
            tls_cert,
            tls_key,
        } => {
            proc::child_setup(*cpu)?;
            let tls = tls_cert.as_deref().zip(tls_key.as_deref());
            child::serve(listen, *max_frame, tls)
        }
        ChildCommand::Client {
            connect,
            millis,
            cpu,
            tls_ca,
        } => {
            proc::child_setup(*cpu)?;
            child::client(connect, *millis, tls_ca.as_deref())
        }
        ChildCommand::RawServer { mech, arg, cpu } => {
            proc::child_setup(*cpu)?;
            raw::serve(*mech, arg.as_deref())
        }
        ChildCommand::TarpcServer { listen, cpu } => {
            proc::child_setup(*cpu)?;
            tarpc_svc::serve(listen)
        }
        ChildCommand::Burn => {
            // Unpinned: it keeps the CPUs it inherited (the parent starts it before pinning).
            proc::child_setup(None)?;
            load::burn()
        }
        ChildCommand::Iceoryx2Server { service, cpu } => {
            proc::child_setup(*cpu)?;
            iceoryx::serve(service)
        }
    }
}
