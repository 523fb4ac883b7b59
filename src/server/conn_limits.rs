//! The connection caps, decided at accept from the TCP peer alone, before any TLS or HTTP
//! work is spent on a connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::audit::WarnThrottle;
use crate::limiter::{key_for_ip, LimitKey};
use crate::web::client_ip::TrustedProxies;

/// Why a connection was refused; also its `reason` label in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxConnectionsPerIp => "max_connections_per_ip",
        }
    }
}

#[derive(Default)]
struct Table {
    total: usize,
    /// Only peers with at least one open connection, so the table never holds more
    /// entries than `max_total`.
    per_peer: HashMap<LimitKey, usize>,
}

/// Counts open connections in total and per peer. One per listener, so that a flood on the
/// public listener cannot lock the operator out of the metrics listener.
pub struct ConnLimits {
    max_total: usize,
    max_per_peer: usize,
    ipv6_prefix: u8,
    /// Reverse proxies carry many clients on few addresses: the per-peer cap would refuse
    /// their users, so only the total applies to them.
    exempt: TrustedProxies,
    table: Mutex<Table>,
    warn: WarnThrottle,
}

/// One open connection's place in the counts, given back on drop.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    key: Option<LimitKey>,
}

impl ConnLimits {
    /// IPv6 peers are counted per `ipv6_prefix` network, as the limiter does: one subscriber
    /// usually holds a whole /64 and could otherwise open `max_per_peer` from each address.
    pub fn new(
        max_total: usize,
        max_per_peer: usize,
        ipv6_prefix: u8,
        exempt: TrustedProxies,
    ) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_peer,
            ipv6_prefix,
            exempt,
            table: Mutex::new(Table::default()),
            warn: WarnThrottle::default(),
        })
    }

    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Result<ConnPermit, Refusal> {
        let key = (!self.exempt.contains(peer)).then(|| key_for_ip(peer, self.ipv6_prefix));
        let decided = {
            let mut table = self.lock();
            if table.total >= self.max_total {
                Err(Refusal::MaxConnections)
            } else if let Some(key) = key {
                let open = table.per_peer.entry(key).or_insert(0);
                if *open >= self.max_per_peer {
                    Err(Refusal::MaxConnectionsPerIp)
                } else {
                    *open += 1;
                    table.total += 1;
                    Ok(())
                }
            } else {
                table.total += 1;
                Ok(())
            }
        };
        match decided {
            Ok(()) => {
                crate::metrics::connection_opened();
                Ok(ConnPermit {
                    limits: Arc::clone(self),
                    key,
                })
            }
            Err(refusal) => {
                crate::metrics::connection_refused(refusal.as_str());
                if let Some(held_back) = self.warn.check() {
                    tracing::warn!(
                        peer = %peer,
                        cap = refusal.as_str(),
                        refusals_not_logged = held_back,
                        "refusing connections over a cap (logged at most once a minute)"
                    );
                }
                Err(refusal)
            }
        }
    }

    /// Connections currently counted.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Peers currently holding at least one connection.
    pub fn tracked_peers(&self) -> usize {
        self.lock().per_peer.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A poisoned lock only means a panic between two integer updates; the counts stay
        // usable, and refusing every connection forever would be worse.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut table = self.limits.lock();
        table.total = table.total.saturating_sub(1);
        if let Some(key) = self.key {
            if let Some(open) = table.per_peer.get_mut(&key) {
                *open -= 1;
                if *open == 0 {
                    table.per_peer.remove(&key);
                }
            }
        }
        drop(table);
        crate::metrics::connection_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_per_peer_cap_refuses_and_frees_its_entry_at_zero() {
        let limits = ConnLimits::new(10, 2, 64, TrustedProxies::default());
        let a = limits.try_acquire(ip("192.0.2.1")).expect("first");
        let b = limits
            .try_acquire(ip("::ffff:192.0.2.1"))
            .expect("mapped is the same peer");
        assert_eq!(
            limits.try_acquire(ip("192.0.2.1")).err(),
            Some(Refusal::MaxConnectionsPerIp)
        );
        let other = limits.try_acquire(ip("192.0.2.2")).expect("another peer");
        assert_eq!(limits.open(), 3);
        drop((a, b, other));
        assert_eq!(limits.open(), 0);
        assert_eq!(
            limits.tracked_peers(),
            0,
            "entries go when their count reaches 0"
        );
    }

    #[test]
    fn ipv6_peers_share_a_cap_per_prefix() {
        let limits = ConnLimits::new(10, 1, 64, TrustedProxies::default());
        let _a = limits.try_acquire(ip("2001:db8::1")).expect("first");
        assert_eq!(
            limits.try_acquire(ip("2001:db8::2")).err(),
            Some(Refusal::MaxConnectionsPerIp)
        );
        assert!(limits.try_acquire(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn trusted_proxies_skip_the_per_peer_cap_but_not_the_total() {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().expect("net")]);
        let limits = ConnLimits::new(3, 1, 64, trusted);
        let held: Vec<_> = (0..3)
            .map(|_| limits.try_acquire(ip("10.0.0.5")).expect("proxy"))
            .collect();
        assert_eq!(limits.tracked_peers(), 0);
        assert_eq!(
            limits.try_acquire(ip("192.0.2.1")).err(),
            Some(Refusal::MaxConnections)
        );
        drop(held);
        assert_eq!(limits.open(), 0);
    }
}
