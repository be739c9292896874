//! The plan on this machine's limits and on others'.

use super::*;

/// This machine: 20,000 descriptors a process, 24 GiB.
fn machine() -> Machine {
    Machine {
        fd_hard: 20_000,
        nr_open: Some(1_048_576),
        file_max: Some(2_466_239),
        files_open: Some(2_000),
        port_range: (32768, 60999),
        somaxconn: Some(4096),
        tcp_mem: Some([287_907, 383_877, 575_814]),
        page_size: 4096,
        mem_available: Some(23 << 30),
        nproc: None,
        loopback_net: true,
    }
}

fn ask(connections: u64) -> Ask {
    Ask {
        connections,
        max_fds_per_process: None,
    }
}

#[test]
fn a_million_is_sharded_by_the_descriptor_limit() {
    let plan = plan(ask(1_000_000), &machine()).unwrap();
    assert_eq!(plan.clients.len(), 51);
    assert_eq!(plan.servers, 52);
    let total: u64 = plan.clients.iter().map(|c| c.connections).sum();
    assert_eq!(total, 1_000_000);
    // Ids follow on from one process to the next.
    for pair in plan.clients.windows(2) {
        assert_eq!(pair[0].first_id + pair[0].connections, pair[1].first_id);
    }
    // No client holds more than its descriptors allow, no address more than its share
    // of the ports, and no address serves two processes.
    let mut all = std::collections::HashSet::new();
    for client in &plan.clients {
        assert!(client.connections <= 20_000 - FD_RESERVE);
        assert!(client.connections <= plan.per_source * client.sources.len() as u64);
        for source in &client.sources {
            assert!(all.insert(*source), "{source} twice");
            assert_eq!(source.octets()[0], 127);
            assert_ne!(*source, Ipv4Addr::LOCALHOST);
        }
    }
    assert_eq!(plan.per_source, 14_116);
}

#[test]
fn where_the_limit_allows_a_million_one_process_each() {
    let machine = Machine {
        fd_hard: 1_048_576,
        ..machine()
    };
    let plan = plan(ask(1_000_000), &machine).unwrap();
    assert_eq!((plan.clients.len(), plan.servers), (1, 1));
    assert_eq!(plan.clients[0].sources.len(), 71);
}

#[test]
fn shards_leave_room_for_the_hash_spread() {
    // One shard takes everything: no spread.
    assert_eq!(shards_for(1, 1000), 1);
    assert_eq!(shards_for(1000, 1000), 1);
    assert_eq!(shards_for(1001, 1000), 2);
    // Two shards of 1,000 cannot take 1,900: a share of 950 spreads by 22.
    assert_eq!(shards_for(1900, 1000), 3);
    let shards = shards_for(1_000_000, 19_936) as f64;
    let share = 1_000_000.0 / shards;
    assert!(share + 5.0 * share.sqrt() <= 19_936.0);
}

#[test]
fn a_small_limit_per_process_crosses_into_several_processes() {
    let plan = plan(
        Ask {
            connections: 30_000,
            max_fds_per_process: Some(8_000),
        },
        &machine(),
    )
    .unwrap();
    assert_eq!(plan.fd_limit, 8_000);
    assert_eq!((plan.clients.len(), plan.servers), (4, 4));
    assert!(
        plan.notes[0].contains("--max-fds-per-process"),
        "{:?}",
        plan.notes
    );
}

#[test]
fn more_than_memory_holds_is_refused_with_what_to_do() {
    let refusals = plan(ask(2_000_000), &machine()).unwrap_err();
    let memory = refusals
        .iter()
        .find(|r| r.limit.starts_with("memory"))
        .unwrap_or_else(|| panic!("{refusals:?}"));
    let text = memory.to_string();
    assert!(text.contains("MemAvailable is 23.0 GiB"), "{text}");
    assert!(text.contains("drop_caches"), "{text}");
    // Every other limit it crosses is named too: here the machine's open files.
    assert!(refusals.iter().any(|r| r.limit.starts_with("fs.file-max")));
}

#[test]
fn one_source_address_bounds_what_runs_without_the_loopback_net() {
    let machine = Machine {
        loopback_net: false,
        port_range: (49152, 65535),
        ..machine()
    };
    assert!(plan(ask(10_000), &machine).is_ok());
    let refusals = plan(ask(100_000), &machine).unwrap_err();
    assert!(
        refusals[0].to_string().contains("16,384 connections"),
        "{refusals:?}"
    );
}

#[test]
fn a_small_accept_queue_is_a_warning() {
    let machine = Machine {
        somaxconn: Some(128),
        ..machine()
    };
    let plan = plan(ask(1000), &machine).unwrap();
    assert_eq!(plan.backlog, 128);
    assert!(plan.warnings[0].contains("net.core.somaxconn is 128"));
}
