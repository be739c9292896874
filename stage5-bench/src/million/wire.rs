//! The lines the processes of a run exchange: children report on their stdout, the
//! parent commands on their stdin. One message per line, a word and `key=value` fields,
//! so a person reading a child's output understands it too:
//!
//! ```text
//! listening port=41233
//! stats open=19210 peak_open=19210 waiting=0 peak_waiting=0 accepted=19210 answered=0
//! progress opened=12000 sent=0 verified=0 failed=0
//! failures connect_refused=3
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;

/// What the parent tells a client: open the connections; send the requests.
pub const OPEN: &str = "open";
/// The start signal: every connection is open, send every request now.
pub const GO: &str = "go";
/// What the parent tells a server shard (or the floor's) to end: it answers what it has
/// and exits.
pub const STOP: &str = "stop";
/// What the parent tells a server shard when the run ends early: nothing will read the
/// answers, so it closes every connection at once.
pub const ABORT: &str = "abort";

/// One line of a child's report: `word key=value ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The first word: `stats`, `progress`, `opened`, `done`, ...
    pub word: String,
    /// The fields, by name.
    pub fields: BTreeMap<String, u64>,
}

impl Message {
    /// A message with no fields yet.
    pub fn new(word: &str) -> Message {
        Message {
            word: word.to_string(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: u64) -> Message {
        self.fields.insert(key.to_string(), value);
        self
    }

    /// A field, or 0 when it is absent.
    pub fn get(&self, key: &str) -> u64 {
        self.fields.get(key).copied().unwrap_or(0)
    }

    /// Reads a line; `None` if it is not a message (a child's warning or error, which
    /// the parent shows as it is).
    pub fn parse(line: &str) -> Option<Message> {
        let mut words = line.split_whitespace();
        let word = words.next()?;
        if !word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return None;
        }
        let mut fields = BTreeMap::new();
        for field in words {
            let (key, value) = field.split_once('=')?;
            fields.insert(key.to_string(), value.parse().ok()?);
        }
        Some(Message {
            word: word.to_string(),
            fields,
        })
    }
}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = self.word.clone();
        for (key, value) in &self.fields {
            let _ = write!(line, " {key}={value}");
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_what_was_written() {
        let message = Message::new("stats")
            .with("open", 19_210)
            .with("waiting", 0);
        let line = message.to_string();
        assert_eq!(line, "stats open=19210 waiting=0");
        assert_eq!(Message::parse(&line), Some(message));
    }

    #[test]
    fn anything_else_is_not_a_message() {
        for line in [
            "",
            "slow-server: out of file descriptors with 19936 connections open",
            "stats open=many",
            "warning: task 3 blocked the event loop",
        ] {
            assert_eq!(Message::parse(line), None, "{line}");
        }
    }
}
