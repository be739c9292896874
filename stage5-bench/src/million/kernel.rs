//! The kernel's side of a connection: what `/proc/meminfo` and `/proc/net/sockstat` say
//! before and while the connections are open. Linux only; elsewhere every reading is
//! `None` and the report says "not measured on this OS".
//!
//! - `Slab`: the kernel's small objects. Each end of a connection is a `tcp_sock`
//!   (about 2.3 KiB), a `socket` with its inode, a `file`, and an `epitem` in the epoll
//!   set of the process holding it. `SUnreclaim` is the part that cannot be dropped
//!   under pressure: these objects live while the connection does.
//! - `TCP: mem` in `sockstat`: pages of socket buffers (data queued in or out), bounded
//!   by `net.ipv4.tcp_mem`. An idle connection has none.
//! - `MemAvailable`: everything together, user space too, as the kernel estimates what
//!   could still be given out.

/// One reading of the kernel's memory counters, in bytes (socket buffers in pages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `MemAvailable`.
    pub available: u64,
    /// `Slab`.
    pub slab: u64,
    /// `SUnreclaim`.
    pub unreclaimable: u64,
    /// `PageTables`: the processes' page tables, which grow with their memory.
    pub page_tables: u64,
    /// `TCP: mem` from `sockstat`, in pages.
    pub tcp_pages: u64,
    /// TCP sockets in use (`TCP: inuse`).
    pub tcp_inuse: u64,
    /// Sockets in TIME_WAIT (`TCP: tw`).
    pub time_wait: u64,
    /// Handshakes a listener dropped because its accept queue was full
    /// (`ListenOverflows` in `/proc/net/netstat`, since boot): each one is retried by
    /// its client a second later, then two, then four.
    pub listen_overflows: u64,
    /// SYNs sent again (`TCPSynRetrans`, since boot).
    pub syn_retransmits: u64,
}

impl Snapshot {
    /// Reads the counters now, or `None` where there is no `/proc`.
    pub fn read() -> Option<Snapshot> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
        let field = |key| shared::memory::kib_field(&meminfo, key);
        let tcp = sockstat_tcp(&sockstat)?;
        let netstat = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
        let tcp_ext = |key| netstat_field(&netstat, "TcpExt:", key).unwrap_or(0);
        Some(Snapshot {
            available: field("MemAvailable:")?,
            slab: field("Slab:")?,
            unreclaimable: field("SUnreclaim:")?,
            page_tables: field("PageTables:").unwrap_or(0),
            tcp_pages: tcp.mem,
            tcp_inuse: tcp.inuse,
            time_wait: tcp.tw,
            listen_overflows: tcp_ext("ListenOverflows"),
            syn_retransmits: tcp_ext("TCPSynRetrans"),
        })
    }
}

/// A counter of `/proc/net/netstat`, where each group is two lines: the names, then
/// the values (`TcpExt: SyncookiesSent ...` / `TcpExt: 0 ...`).
pub fn netstat_field(netstat: &str, group: &str, key: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|line| line.starts_with(group));
    let names = lines.next()?.split_whitespace().skip(1);
    let values = lines.next()?.split_whitespace().skip(1);
    let (_, value) = names.zip(values).find(|(name, _)| *name == key)?;
    value.parse().ok()
}

/// The `TCP:` line of `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockstatTcp {
    /// Sockets in use.
    pub inuse: u64,
    /// In TIME_WAIT.
    pub tw: u64,
    /// Pages of socket buffers.
    pub mem: u64,
}

/// Reads the `TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 77` line.
pub fn sockstat_tcp(sockstat: &str) -> Option<SockstatTcp> {
    let line = sockstat.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |key: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == key)?;
        words.get(at + 1)?.parse().ok()
    };
    Some(SockstatTcp {
        inuse: get("inuse")?,
        tw: get("tw")?,
        mem: get("mem")?,
    })
}

/// Socket buffer pages now (`TCP: mem`), to watch `net.ipv4.tcp_mem` while running.
pub fn tcp_pages() -> Option<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    Some(sockstat_tcp(&sockstat)?.mem)
}

/// Waits, up to `limit`, for the sockets of a run that just ended to be gone: closed
/// sockets are freed a moment later (after an RCU grace period), and the next run's
/// "before" must not count them.
pub fn settle(limit: std::time::Duration) {
    let start = std::time::Instant::now();
    let mut last = Snapshot::read().map(|s| s.tcp_inuse);
    while start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = Snapshot::read().map(|s| s.tcp_inuse);
        if now == last {
            return;
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tcp_line_is_read_by_name() {
        let text =
            "sockets: used 13\nTCP: inuse 5 orphan 0 tw 7 alloc 6 mem 77\nUDP: inuse 0 mem 0\n";
        let tcp = sockstat_tcp(text).unwrap();
        assert_eq!((tcp.inuse, tcp.tw, tcp.mem), (5, 7, 77));
        assert_eq!(sockstat_tcp("UDP: inuse 0 mem 0\n"), None);
    }

    #[test]
    fn a_netstat_counter_is_read_by_name() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 18\n\
                    IpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(netstat_field(text, "TcpExt:", "ListenOverflows"), Some(17));
        assert_eq!(netstat_field(text, "IpExt:", "InNoRoutes"), Some(3));
        assert_eq!(netstat_field(text, "TcpExt:", "Nothing"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_the_counters() {
        let snapshot = Snapshot::read().unwrap();
        assert!(snapshot.available > 0 && snapshot.slab > 0);
    }
}
