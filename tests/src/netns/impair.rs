//! The bad network: a delay and a random loss on one direction of a link, with `tc netem`
//! where the kernel has it, and otherwise with the nearest real thing (see [`Emulation`]).

use std::fmt;
use std::time::Duration;

use super::{Host, HostProcess};

/// The NFQUEUE number the fallback uses (queues are per network namespace).
const QUEUE: u16 = 7;

/// How the delay and the loss are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulation {
    /// `tc qdisc add dev eth0 root netem delay D loss L%` on the sending host.
    Netem,
    /// For a kernel without netem: on the receiving host, an nftables rule at prerouting
    /// priority -300 drops L% of the packets from the sender (`numgen random mod 100 < L`, a
    /// real kernel drop), then an iptables mangle/PREROUTING rule sends the rest to NFQUEUE,
    /// where `netem-delay` (a binary of this crate) accepts each one D after it arrived, in
    /// order. The receiving side is used rather than the sender's egress so that held packets
    /// are not charged to the sending socket (TCP small queues would throttle it, which netem
    /// on a real link does not do).
    NfqueueDelayNftLoss,
}

impl fmt::Display for Emulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Emulation::Netem => "tc netem on the sender's eth0 (egress)",
            Emulation::NfqueueDelayNftLoss => {
                "FALLBACK (this kernel has no netem): nftables numgen random loss + NFQUEUE \
                 delay by netem-delay, on the receiver's eth0 (ingress)"
            }
        })
    }
}

/// A delay and a loss applied to what one host sends another; lasts as long as the hosts
/// (the delaying process, if any, is killed on drop).
pub struct Impairment {
    /// Which emulation is in force.
    pub emulation: Emulation,
    /// The host whose rules or qdisc count the losses.
    counter: Host,
    _delayer: Option<HostProcess>,
}

impl Impairment {
    /// Delays by `delay` and drops `loss_percent` % of the packets `from` sends to `to`, and
    /// says loudly on stderr which emulation does it.
    pub fn apply(from: &Host, to: &Host, delay: Duration, loss_percent: u32) -> Impairment {
        let delay_ms = format!("{}ms", delay.as_millis());
        let loss = format!("{loss_percent}%");
        let netem = from.run(
            "tc",
            &[
                "qdisc", "add", "dev", "eth0", "root", "netem", "delay", &delay_ms, "loss", &loss,
            ],
        );
        let impairment = match netem {
            Ok(_) => Impairment {
                emulation: Emulation::Netem,
                counter: from.clone(),
                _delayer: None,
            },
            Err(error) if error.contains("qdisc kind is unknown") => {
                Self::fallback(from, to, &delay_ms, loss_percent)
            }
            Err(error) => panic!("tc netem: {error}"),
        };
        eprintln!(
            "BAD NETWORK: {} -> {}: delay {delay_ms}, loss {loss}, made with {}",
            from.ip, to.ip, impairment.emulation
        );
        impairment
    }

    fn fallback(from: &Host, to: &Host, delay_ms: &str, loss_percent: u32) -> Impairment {
        let rules = format!(
            "table inet rpcloss {{\n\
             chain prerouting {{ type filter hook prerouting priority -300; \
             iifname \"eth0\" ip saddr {} numgen random mod 100 < {loss_percent} counter drop; }}\n\
             }}\n",
            from.ip
        );
        to.nft(&rules).expect("nftables loss rule");
        let delayer = HostProcess::spawn("netem-delay", {
            let mut command = to.command(super::binary("netem-delay"));
            command.args(["--queue", &QUEUE.to_string(), "--delay", delay_ms]);
            command
        });
        delayer.expect_line("delaying queue", Duration::from_secs(20));
        to.run(
            "iptables",
            &[
                "-t",
                "mangle",
                "-A",
                "PREROUTING",
                "-i",
                "eth0",
                "-s",
                &from.ip.to_string(),
                "-j",
                "NFQUEUE",
                "--queue-num",
                &QUEUE.to_string(),
            ],
        )
        .expect("iptables NFQUEUE rule");
        Impairment {
            emulation: Emulation::NfqueueDelayNftLoss,
            counter: to.clone(),
            _delayer: Some(delayer),
        }
    }

    /// What the emulation counted as dropped so far: netem's qdisc statistics, or the
    /// nftables loss rule's counter.
    pub fn losses(&self) -> String {
        let shown = match self.emulation {
            Emulation::Netem => self
                .counter
                .run("tc", &["-s", "qdisc", "show", "dev", "eth0"]),
            Emulation::NfqueueDelayNftLoss => self
                .counter
                .run("nft", &["list", "table", "inet", "rpcloss"]),
        };
        let text = shown.unwrap_or_else(|e| e);
        let line = text
            .lines()
            .find(|line| line.contains("dropped") || line.contains("counter"))
            .unwrap_or(&text);
        line.trim().to_owned()
    }
}
