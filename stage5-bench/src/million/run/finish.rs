//! The end of a run, however it came: every child stopped (the servers after their last
//! counts), and every connection accounted for, verified or failed by kind.

use std::time::{Duration, Instant};

use super::super::outcome::{Mode, Outcome};
use super::super::wire::{ABORT, STOP};
use super::{ClientState, Run, Stop};

impl Run<'_> {
    /// Stops every child (servers after their last counts), and fills in the outcome.
    pub(super) fn finish(mut self, result: Result<(), Stop>) -> Outcome {
        self.end_progress_line();
        match result {
            Ok(()) => {}
            Err(Stop::Interrupted) => {
                self.outcome.interrupted = true;
                self.outcome.stopped = Some("interrupted (Ctrl-C or SIGTERM)".into());
            }
            Err(Stop::Failed(why)) => self.outcome.stopped = Some(why),
        }
        // Servers answer what they have and report once more; clients are done or,
        // after a stop, ended.
        let servers: Vec<usize> = self.server_children().collect();
        let word = if self.outcome.stopped.is_some() {
            ABORT
        } else {
            STOP
        };
        for &child in &servers {
            self.servers[self.roles[child].1].stopping = true;
            self.children.tell(child, word);
        }
        for child in self.client_children() {
            self.clients[self.roles[child].1].stopping = true;
            match (self.mode, &self.outcome.stopped) {
                // Floor clients hold their connections until told.
                (Mode::Floor, None) => self.children.tell(child, STOP),
                // A real client ends by itself once done; stopped early, it is told so.
                (_, Some(_)) => self.children.hang_up(child),
                (Mode::Run, None) => {}
            }
        }
        let grace = Instant::now() + Duration::from_secs(10);
        let _ = self.pump("stopping", grace, None, |run| {
            (0..run.children.list.len()).all(|i| run.children.list[i].status.is_some())
        });
        self.children.stop_all(Duration::from_secs(2));

        let o = &mut self.outcome;
        if o.opened == 0 {
            o.opened = self.clients.iter().map(|c| c.opened).sum();
        }
        if o.verified == 0 {
            o.verified = self.clients.iter().map(|c| c.verified).sum();
        }
        let has_waiting = self.servers.iter().any(|s| {
            s.stats
                .as_ref()
                .is_some_and(|m| m.fields.contains_key("peak_waiting"))
        });
        if has_waiting {
            o.shard_peaks_waiting = Some(
                self.servers
                    .iter()
                    .filter_map(|s| s.stats.as_ref())
                    .map(|m| m.get("peak_waiting"))
                    .sum(),
            );
        }
        for client in &self.clients {
            for (kind, count) in &client.failures {
                *o.failures.entry(kind.clone()).or_insert(0) += count;
            }
        }
        // What no client accounted for: a client that died, or a run stopped early.
        let accounted_for = |c: &ClientState| {
            let failed: u64 = c.failures.values().sum();
            match self.mode {
                Mode::Run => c.verified + failed,
                Mode::Floor => c.opened + failed,
            }
        };
        let lost: u64 = self
            .clients
            .iter()
            .map(|c| c.connections.saturating_sub(accounted_for(c)))
            .sum();
        let unstarted: u64 =
            self.plan.connections - self.clients.iter().map(|c| c.connections).sum::<u64>();
        if lost + unstarted > 0 {
            let key = if o.interrupted {
                "unfinished_interrupted"
            } else {
                "unfinished_stopped"
            };
            *o.failures.entry(key.into()).or_insert(0) += lost + unstarted;
        }
        let fd_exhausted: u64 = self
            .servers
            .iter()
            .filter_map(|s| s.stats.as_ref())
            .map(|m| m.get("fd_exhausted"))
            .sum();
        if fd_exhausted > 0 {
            o.warnings.push(format!(
                "server shards ran out of file descriptors {fd_exhausted} times \
                 (RLIMIT_NOFILE {}): the kernel's spread over the shards was more uneven \
                 than planned",
                self.plan.fd_limit
            ));
        }
        o.total = self.started.elapsed();
        std::mem::take(&mut self.outcome)
    }
}
