//! The blocking client's conformance suite (`rpc_tests::conformance::blocking`) on every
//! built-in transport.

rpc_tests::blocking_conformance! {
    tcp => rpc_tests::Transport::Tcp,
    unix => rpc_tests::Transport::Unix,
    unix_abstract => rpc_tests::Transport::UnixAbstract,
    mem => rpc_tests::Transport::Mem,
    shm_named => rpc_tests::Transport::ShmNamed,
    shm => rpc_tests::Transport::Shm,
    mmap => rpc_tests::Transport::Mmap,
    sysv_shm => rpc_tests::Transport::SysvShm,
    spawn => rpc_tests::Transport::Spawn,
    fifo => rpc_tests::Transport::Fifo,
    mq => rpc_tests::Transport::Mq,
    sysv_mq => rpc_tests::Transport::SysvMq,
}
