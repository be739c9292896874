//! How many processes, which addresses, and whether the machine can hold the run at all:
//! read every limit first, then lay the run out, or refuse it with every limit it would
//! meet, each named with its value, what it allows and what to raise.
//!
//! The limits of this machine, and what each one shapes:
//!
//! | limit | shapes |
//! | --- | --- |
//! | `RLIMIT_NOFILE` (hard), capped by `fs.nr_open` | connections per process: how many processes |
//! | `net.ipv4.ip_local_port_range` | connections per source address: how many addresses |
//! | `fs.file-max` | open files on the whole machine: both ends of every connection |
//! | `net.core.somaxconn` | each shard's accept queue: how bursty opening may be |
//! | `net.ipv4.tcp_mem` | socket buffers on the whole machine |
//! | `MemAvailable` | everything: about 11.5 KiB of kernel memory per pair, plus ours |

use std::fmt;
use std::net::Ipv4Addr;

use shared::limits::FD_RESERVE;

use crate::text::thousands;

/// Kernel memory per connection pair, from a probe of 100,000 idle loopback pairs on a
/// Linux 6.x machine: `MemAvailable` fell 11.4 KiB per pair, 9.9 KiB of it in the slab
/// (both sockets, their files, inodes and epoll entries). Used to refuse, up front, a
/// size the machine cannot hold; the run measures the real figure.
pub const KERNEL_BYTES_PER_PAIR: u64 = 11_700;

/// User-space memory per connection pair that the refusal counts on: the client's task
/// and its socket's registration, the server's connection record and timer. The run
/// measures the real figure; this only has to be on the safe side.
pub const USER_BYTES_PER_PAIR: u64 = 2_560;

/// Resident memory of one child process before it holds a connection (its binary, the
/// allocator's arenas, two threads' stacks), on the safe side.
pub const BYTES_PER_PROCESS: u64 = 4 << 20;

/// How much of `MemAvailable` a run may plan to use: the rest is for everything else
/// the machine does meanwhile, and for the page cache it still needs.
pub const MEMORY_SHARE: f64 = 0.85;

/// The share of a source address's ports a run uses: near a full range, the kernel
/// searches longer for a free port at each connect.
pub const PORT_SHARE: f64 = 0.5;

/// What the machine allows, read once at the start.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// `RLIMIT_NOFILE`'s ceiling: what every child may raise its limit to.
    pub fd_hard: u64,
    /// `fs.nr_open`: the ceiling of the hard limit itself (Linux).
    pub nr_open: Option<u64>,
    /// `fs.file-max`: open files on the whole machine (Linux).
    pub file_max: Option<u64>,
    /// Files open on the machine now (`fs.file-nr`).
    pub files_open: Option<u64>,
    /// The ephemeral ports, first and last.
    pub port_range: (u32, u32),
    /// `net.core.somaxconn`: the cap on every listen backlog.
    pub somaxconn: Option<u64>,
    /// `net.ipv4.tcp_mem`, in pages: pressure begins at the second, the last is the limit.
    pub tcp_mem: Option<[u64; 3]>,
    /// Bytes per page.
    pub page_size: u64,
    /// `MemAvailable`, in bytes (Linux), or a cgroup's limit when lower.
    pub mem_available: Option<u64>,
    /// `RLIMIT_NPROC`, when there is one: processes and threads of this user.
    pub nproc: Option<u64>,
    /// Whether all of 127.0.0.0/8 is local (Linux), or only 127.0.0.1 (macOS, unless
    /// aliases were added to `lo0`).
    pub loopback_net: bool,
}

/// What the reader asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Connections, all open at once.
    pub connections: u64,
    /// Descriptors each process may use (`--max-fds-per-process`), below the machine's.
    pub max_fds_per_process: Option<u64>,
}

/// One client process's share of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientShare {
    /// The first request id it sends; it sends `first_id..first_id + connections`.
    pub first_id: u64,
    /// How many connections it opens.
    pub connections: u64,
    /// The source addresses its connections come from, in turn.
    pub sources: Vec<Ipv4Addr>,
}

/// How a run is laid out over processes and addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Connections, all open at once.
    pub connections: u64,
    /// The open-file limit every child sets for itself.
    pub fd_limit: u64,
    /// Server shards, sharing one port.
    pub servers: usize,
    /// The client processes.
    pub clients: Vec<ClientShare>,
    /// Each shard's listen backlog.
    pub backlog: u64,
    /// Connections one source address carries at most.
    pub per_source: u64,
    /// What each limit allows, one line each, for the plan's printout.
    pub notes: Vec<String>,
    /// Limits the run may meet without being refused (a small accept queue).
    pub warnings: Vec<String>,
}

/// A limit the run would cross: refused before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The limit and its value, e.g. `memory: MemAvailable is 23.0 GiB`.
    pub limit: String,
    /// What it allows, and what the run needs.
    pub allows: String,
    /// What to raise, and how.
    pub raise: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}. {}", self.limit, self.allows, self.raise)
    }
}

/// The wanted listen backlog: what the slow server asks for, and Linux's default cap.
pub const BACKLOG: u64 = 4096;

impl Machine {
    /// Reads this machine's limits.
    pub fn read() -> Machine {
        let limit = shared::limits::fd_limit().ok();
        let fd_hard = limit.map_or(1024, shared::limits::fd_ceiling);
        Machine {
            fd_hard,
            nr_open: sysctl("fs/nr_open"),
            file_max: sysctl("fs/file-max"),
            files_open: sysctl("fs/file-nr"),
            port_range: port_range(),
            somaxconn: somaxconn(),
            tcp_mem: tcp_mem(),
            page_size: page_size(),
            mem_available: mem_available(),
            nproc: nproc(),
            loopback_net: cfg!(target_os = "linux"),
        }
    }

    /// Ports per source address and destination.
    pub fn ports(&self) -> u64 {
        u64::from(self.port_range.1.saturating_sub(self.port_range.0)) + 1
    }
}

/// Lays the run out, or refuses it with every limit it would cross.
pub fn plan(ask: Ask, machine: &Machine) -> Result<Plan, Vec<Refusal>> {
    let mut refusals = Vec::new();
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let n = ask.connections;

    // Descriptors: each process keeps FD_RESERVE for stdio, epoll, pipes and the like.
    let fd_limit = ask
        .max_fds_per_process
        .map_or(machine.fd_hard, |max| max.min(machine.fd_hard));
    let per_process = fd_limit.saturating_sub(FD_RESERVE);
    if per_process < 64 {
        refusals.push(Refusal {
            limit: format!("open files per process: {}", thousands(fd_limit)),
            allows: format!(
                "{} connections a process, after the {FD_RESERVE} descriptors every process \
                 keeps for itself",
                per_process
            ),
            raise: format!(
                "Give each process at least {} (`--max-fds-per-process`, `ulimit -n`).",
                FD_RESERVE + 64
            ),
        });
        return Err(refusals);
    }
    let clients = n.div_ceil(per_process).max(1);
    let servers = shards_for(n, per_process);
    let origin = match ask.max_fds_per_process {
        Some(_) if fd_limit < machine.fd_hard => "--max-fds-per-process".to_string(),
        _ => format!("RLIMIT_NOFILE's hard limit{}", nr_open_text(machine)),
    };
    let one_process = if clients == 1 && servers == 1 {
        String::new()
    } else {
        format!(
            "; one process each would need `ulimit -Hn {}` (as root){}",
            n + FD_RESERVE,
            match machine.nr_open {
                Some(nr) if n + FD_RESERVE > nr => {
                    format!(" and fs.nr_open above {}", thousands(nr))
                }
                _ => String::new(),
            }
        )
    };
    notes.push(format!(
        "open files per process: {} ({origin}): {} connections a process, so {} and \
         {}{one_process}",
        thousands(fd_limit),
        thousands(per_process),
        super::report::plural(clients as usize, "client process", "client processes"),
        super::report::plural(servers, "server process", "server processes"),
    ));

    // Ports: one source address carries at most PORT_SHARE of the range to one server.
    let ports = machine.ports();
    let per_source = if machine.loopback_net {
        ((ports as f64 * PORT_SHARE) as u64).max(1)
    } else {
        ports
    };
    let (first, last) = machine.port_range;
    let shares = shares(n, clients, per_source, machine.loopback_net);
    if machine.loopback_net {
        let sources: usize = shares.iter().map(|share| share.sources.len()).sum();
        notes.push(format!(
            "source addresses: {sources} from 127.0.0.2, each client its own, at most {} \
             connections an address (half of the {} ports of net.ipv4.ip_local_port_range \
             {first}-{last}, so the kernel finds a free one fast)",
            thousands(per_source),
            thousands(ports),
        ));
        if sources > 250 * 256 * 256 {
            refusals.push(Refusal {
                limit: format!("net.ipv4.ip_local_port_range: {first}-{last}"),
                allows: format!(
                    "{} connections per source address; 127.0.0.0/8 cannot hold the {sources} \
                     addresses that {} connections need",
                    thousands(per_source),
                    thousands(n)
                ),
                raise: "Widen it: `sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"`.".into(),
            });
        }
    } else if n > per_source {
        refusals.push(Refusal {
            limit: format!("ephemeral ports: {first}-{last}, one source address"),
            allows: format!(
                "{} connections from 127.0.0.1 to one server port; {} asked",
                thousands(per_source),
                thousands(n)
            ),
            raise: "Only Linux routes all of 127.0.0.0/8 to the loopback interface: run this \
                    size on Linux, or ask for fewer connections (`--connections`)."
                .into(),
        });
    }

    // Files on the whole machine: both ends of every connection, and each process's own.
    let processes = clients + servers as u64;
    if let Some(file_max) = machine.file_max {
        let open = machine.files_open.unwrap_or(0);
        let need = 2 * n + processes * FD_RESERVE;
        if open + need > file_max {
            refusals.push(Refusal {
                limit: format!(
                    "fs.file-max: {} open files on the machine",
                    thousands(file_max)
                ),
                allows: format!(
                    "{} more with {} open now; {} pairs need {}",
                    thousands(file_max.saturating_sub(open)),
                    thousands(open),
                    thousands(n),
                    thousands(need)
                ),
                raise: format!(
                    "Raise it: `sysctl -w fs.file-max={}`.",
                    (open + need).next_multiple_of(1_000_000)
                ),
            });
        }
    }

    // Processes and threads: each child runs three threads at most.
    if let Some(nproc) = machine.nproc {
        let threads = 3 * processes + 16;
        if threads > nproc {
            refusals.push(Refusal {
                limit: format!("RLIMIT_NPROC: {} processes and threads", thousands(nproc)),
                allows: format!("fewer than the {threads} threads of {processes} processes"),
                raise: format!("Raise it: `ulimit -u {}`.", threads + 1024),
            });
        }
    }

    // Memory: refuse what cannot fit, before a single connection opens.
    let need = n * (KERNEL_BYTES_PER_PAIR + USER_BYTES_PER_PAIR) + processes * BYTES_PER_PROCESS;
    if let Some(available) = machine.mem_available {
        let budget = (available as f64 * MEMORY_SHARE) as u64;
        let text = format!(
            "about {} for {} pairs ({:.1} KiB of kernel and {:.1} KiB of user space each, and \
             {} processes)",
            gib(need),
            thousands(n),
            KERNEL_BYTES_PER_PAIR as f64 / 1024.0,
            USER_BYTES_PER_PAIR as f64 / 1024.0,
            processes
        );
        if need > budget {
            let fits = budget.saturating_sub(processes * BYTES_PER_PROCESS)
                / (KERNEL_BYTES_PER_PAIR + USER_BYTES_PER_PAIR);
            refusals.push(Refusal {
                limit: format!("memory: MemAvailable is {}", gib(available)),
                allows: format!(
                    "{:.0}% of it holds about {} pairs; the run needs {text}",
                    MEMORY_SHARE * 100.0,
                    thousands(fits)
                ),
                raise: "Free memory (close other programs, `sync; echo 1 > \
                        /proc/sys/vm/drop_caches` to drop the page cache) or ask for fewer \
                        connections."
                    .into(),
            });
        } else {
            notes.push(format!("memory: {text}, of {} available", gib(available)));
        }
    } else {
        notes.push(format!(
            "memory: not measured on this OS (no /proc/meminfo); the run needs {}",
            gib(need)
        ));
    }

    // The accept queue and socket buffers: met while running, not refused.
    let backlog = machine.somaxconn.map_or(BACKLOG, |max| max.min(BACKLOG));
    match machine.somaxconn {
        Some(max) if max < BACKLOG => warnings.push(format!(
            "net.core.somaxconn is {max}: each shard's accept queue holds {max} connections; \
             past that the kernel drops handshakes and the clients retry them after 1, 2, 4 s. \
             Raise it: `sysctl -w net.core.somaxconn={BACKLOG}`."
        )),
        _ => notes.push(format!(
            "listen backlog: {} per shard{}",
            thousands(backlog),
            machine.somaxconn.map_or(String::new(), |max| format!(
                " (net.core.somaxconn {})",
                thousands(max)
            ))
        )),
    }
    if let Some([_, pressure, limit]) = machine.tcp_mem {
        // A request waiting in a receive queue holds one buffer of about 1 KiB.
        let burst = n * 1024;
        let (pressure, limit) = (pressure * machine.page_size, limit * machine.page_size);
        let text = format!(
            "net.ipv4.tcp_mem: socket buffers under pressure from {}, limit {}",
            gib(pressure),
            gib(limit)
        );
        if burst > pressure {
            warnings.push(format!(
                "{text}; {} requests queued unread at once would need about {}. Raise it \
                 if the run reports TCP memory pressure: `sysctl -w net.ipv4.tcp_mem=\"{} {} {}\"`.",
                thousands(n),
                gib(burst),
                burst / machine.page_size,
                2 * burst / machine.page_size,
                3 * burst / machine.page_size
            ));
        } else {
            notes.push(text);
        }
    }

    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok(Plan {
        connections: n,
        fd_limit,
        servers,
        clients: shares,
        backlog,
        per_source,
        notes,
        warnings,
    })
}

// ANCHOR: shards_for
/// The fewest server shards that hold `n` connections when the kernel spreads them.
///
/// `SO_REUSEPORT` picks a shard by a hash of each connection's addresses and ports, so a
/// shard's share is random: binomial around `n / shards`, with a spread (standard
/// deviation) of `sqrt(n p (1 - p))` for `p = 1 / shards`. Five spreads of room make a
/// shard that overflows its descriptors a one-in-millions event. One shard takes all.
pub fn shards_for(n: u64, per_process: u64) -> usize {
    let fits = |shards: u64| {
        let p = 1.0 / shards as f64;
        let share = n as f64 * p;
        share + 5.0 * (share * (1.0 - p)).sqrt() <= per_process as f64
    };
    let mut shards = n.div_ceil(per_process).max(1);
    while !fits(shards) {
        shards += 1;
    }
    shards as usize
}
// ANCHOR_END: shards_for

/// Splits `n` connections over `clients` processes, in order of request ids, and gives
/// each its own source addresses from 127.0.0.2 on.
fn shares(n: u64, clients: u64, per_source: u64, loopback_net: bool) -> Vec<ClientShare> {
    let mut next_source = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    let mut first_id = 0;
    (0..clients)
        .map(|i| {
            // The first `n % clients` processes take one more.
            let connections = n / clients + u64::from(i < n % clients);
            let sources = if loopback_net {
                let count = connections.div_ceil(per_source).max(1) as u32;
                let sources = (next_source..next_source + count).map(Ipv4Addr::from);
                next_source += count;
                sources.collect()
            } else {
                vec![Ipv4Addr::LOCALHOST]
            };
            let share = ClientShare {
                first_id,
                connections,
                sources,
            };
            first_id += connections;
            share
        })
        .collect()
}

fn nr_open_text(machine: &Machine) -> String {
    machine.nr_open.map_or(String::new(), |nr| {
        format!(", below fs.nr_open {}", thousands(nr))
    })
}

/// `13.1 GiB`.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn sysctl(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/sys/{name}")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn port_range() -> (u32, u32) {
    #[cfg(target_vendor = "apple")]
    {
        let first = shared::limits::sysctl_int(c"net.inet.ip.portrange.first");
        let last = shared::limits::sysctl_int(c"net.inet.ip.portrange.last");
        if let (Some(first), Some(last)) = (first, last) {
            return (first as u32, last as u32);
        }
    }
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let range = text.ok().and_then(|text| {
        let mut words = text.split_whitespace().map(|w| w.parse().ok());
        Some((words.next()??, words.next()??))
    });
    // Linux's default, and macOS's (49152-65535) is smaller still: no guess above it.
    range.unwrap_or(if cfg!(target_os = "linux") {
        (32768, 60999)
    } else {
        (49152, 65535)
    })
}

fn somaxconn() -> Option<u64> {
    #[cfg(target_vendor = "apple")]
    {
        shared::limits::sysctl_int(c"kern.ipc.somaxconn")
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        sysctl("net/core/somaxconn")
    }
}

/// `net.ipv4.tcp_mem`, in pages (Linux).
pub fn tcp_mem() -> Option<[u64; 3]> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem").ok()?;
    let mut words = text.split_whitespace().map(|w| w.parse().ok());
    Some([words.next()??, words.next()??, words.next()??])
}

/// Bytes per memory page.
pub fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// `MemAvailable`, or what this process's cgroup (v2) still allows, whichever is lower.
fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = shared::memory::kib_field(&meminfo, "MemAvailable:")?;
    Some(match cgroup_room() {
        Some(room) => available.min(room),
        None => available,
    })
}

fn cgroup_room() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|line| line.strip_prefix("0::"))?;
    let dir = format!("/sys/fs/cgroup{}", path.trim_end_matches('/'));
    let read = |file: &str| std::fs::read_to_string(format!("{dir}/{file}")).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max": no limit
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

#[allow(
    clippy::unnecessary_cast,
    reason = "rlim_t is u64 on Linux, not everywhere"
)]
fn nproc() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64)
}

#[cfg(test)]
mod tests;
