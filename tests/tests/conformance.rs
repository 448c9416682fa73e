//! The transport conformance suite (`rpc_tests::conformance::calls`) on every built-in
//! transport: `tcp::one_call`, `unix::one_call`, ... A new transport joins with one line here.

rpc_tests::call_conformance! {
    tcp => rpc_tests::Transport::Tcp,
    unix => rpc_tests::Transport::Unix,
    unix_abstract => rpc_tests::Transport::UnixAbstract,
    mem => rpc_tests::Transport::Mem,
    shm_named => rpc_tests::Transport::ShmNamed,
    shm => rpc_tests::Transport::Shm,
    mmap => rpc_tests::Transport::Mmap,
    sysv_shm => rpc_tests::Transport::SysvShm,
    fifo => rpc_tests::Transport::Fifo,
    mq => rpc_tests::Transport::Mq,
    sysv_mq => rpc_tests::Transport::SysvMq,
}

// `spawn:` starts a server process per connection, each serving exactly that one connection,
// so no server ever holds two and `connections_are_limited_by_name` cannot apply (nor
// `two_services_share_one_listener`: the child serves the probe alone); every other body runs
// unchanged. `tests/spawn_process.rs` checks the one-connection-per-child rule itself, with
// reaping and child death.
rpc_tests::call_conformance! {
    @one_connection_each spawn => rpc_tests::Transport::Spawn,
}
