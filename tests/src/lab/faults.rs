//! Network faults with iptables inside the host namespaces (`tc netem` is
//! not in this kernel). Each host namespace gets a chain `LAB`, jumped to
//! from INPUT and OUTPUT; a fault fills it, [`heal`] empties it.

use std::collections::BTreeSet;

use anyhow::{Result, ensure};

use super::netns::{self, Network};

/// A network fault (names as turmoil and Jepsen use them).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Every host drops this fraction of the packets it receives.
    Loss(f64),
    /// Hosts in different groups cannot reach each other; hosts in no group
    /// reach everyone.
    Partition(Vec<Vec<usize>>),
    /// Packets from `from` to `to` are dropped; the other way works.
    PartitionOneway {
        /// Senders.
        from: Vec<usize>,
        /// Receivers.
        to: Vec<usize>,
    },
    /// Two halves that cannot reach each other, and `via`, which reaches both.
    Bridge {
        /// One half.
        a: Vec<usize>,
        /// The other half.
        b: Vec<usize>,
        /// The one host in both.
        via: usize,
    },
    /// One host cut off from everyone.
    Isolate(usize),
}

/// Installs the `LAB` chain in every host namespace.
pub fn prepare(net: &Network) -> Result<()> {
    for i in 0..net.len() {
        restore(net.host(i), "*filter\n:LAB - [0:0]\n-I INPUT -j LAB\n-I OUTPUT -j LAB\nCOMMIT\n")?;
    }
    Ok(())
}

/// Applies `fault` (on top of any already applied); the hosts it touched.
pub fn apply(net: &Network, fault: &Fault) -> Result<BTreeSet<usize>> {
    let mut rules: Vec<Vec<String>> = vec![Vec::new(); net.len()];
    let drop_from = |rules: &mut Vec<Vec<String>>, at: usize, from: usize| {
        rules[at].push(format!("-A LAB -s {} -j DROP", net.addr(from)));
    };
    match fault {
        Fault::Loss(p) => {
            ensure!((0.0..=1.0).contains(p), "loss {p} is not a probability");
            for host in &mut rules {
                host.push(format!("-A LAB -i eth0 -m statistic --mode random --probability {p} -j DROP"));
            }
        }
        Fault::Partition(groups) => {
            for (g, group) in groups.iter().enumerate() {
                for other in groups.iter().enumerate().filter(|(h, _)| *h != g).flat_map(|(_, o)| o) {
                    for &at in group {
                        drop_from(&mut rules, at, *other);
                    }
                }
            }
        }
        Fault::PartitionOneway { from, to } => {
            for &at in to {
                for &f in from {
                    drop_from(&mut rules, at, f);
                }
            }
        }
        Fault::Bridge { a, b, via } => {
            ensure!(!a.contains(via) && !b.contains(via), "the bridge host is in neither half");
            return apply(net, &Fault::Partition(vec![a.clone(), b.clone()]));
        }
        Fault::Isolate(i) => {
            rules[*i].push("-A LAB -i eth0 -j DROP".into());
            rules[*i].push("-A LAB -o eth0 -j DROP".into());
        }
    }
    let mut touched = BTreeSet::new();
    for (i, host) in rules.iter().enumerate().filter(|(_, r)| !r.is_empty()) {
        ensure!(i < net.len(), "no host {i}");
        restore(net.host(i), &format!("*filter\n{}\nCOMMIT\n", host.join("\n")))?;
        touched.insert(i);
    }
    Ok(touched)
}

/// Removes every fault from the hosts in `hosts`.
pub fn heal(net: &Network, hosts: impl IntoIterator<Item = usize>) -> Result<()> {
    for i in hosts {
        restore(net.host(i), "*filter\n:LAB - [0:0]\nCOMMIT\n")?;
    }
    Ok(())
}

/// Runs `iptables-restore --noflush` with `rules` in namespace `ns`.
fn restore(ns: &str, rules: &str) -> Result<()> {
    netns::feed("ip", &["netns", "exec", ns, "iptables-restore", "--noflush"], rules)
}
