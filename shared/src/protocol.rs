//! The wire protocol: one request per line, answered with the same line.
//!
//! A request is `Request {id}\n`: at most [`MAX_LINE_LEN`] bytes of UTF-8 before the
//! newline. A line may also end with `\r\n`, as lines typed into `telnet` or sent by
//! many network tools do; the `\r` is part of the line end, not of the line. Bytes arrive from a socket in whatever pieces the kernel hands over, so every
//! stage feeds them into a [`LineDecoder`] and takes whole lines out:
//!
//! ```
//! use shared::protocol::{DecodeError, LineDecoder};
//!
//! let mut decoder = LineDecoder::new();
//! decoder.push(b"Request 9\nReq");        // one whole line and the start of the next
//! assert_eq!(decoder.next_line(), Ok(Some("Request 9".to_string())));
//! assert_eq!(decoder.next_line(), Ok(None)); // "Req" waits for more bytes
//! decoder.push(b"uest 8\n");
//! assert_eq!(decoder.next_line(), Ok(Some("Request 8".to_string())));
//! assert_eq!(decoder.finish(), Ok(()));    // EOF on a line boundary is clean
//!
//! decoder.push(b"Request 7");
//! assert_eq!(decoder.finish(), Err(DecodeError::ClosedMidLine));
//! ```

use std::fmt;

/// The longest line, in bytes and without its `\n` or `\r\n`, that either side accepts.
pub const MAX_LINE_LEN: usize = 1024;

/// The request line for `id`, newline included: what goes on the wire.
pub fn request(id: u64) -> String {
    format!("Request {id}\n")
}

/// The line the server must send back for request `id`, without the newline:
/// the decoder's output is compared with this.
pub fn expected_response(id: u64) -> String {
    format!("Request {id}")
}

/// Why a stream of bytes is not a valid sequence of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// More than [`MAX_LINE_LEN`] bytes arrived without a newline.
    LineTooLong,
    /// A complete line is not valid UTF-8.
    InvalidUtf8,
    /// The peer closed the connection in the middle of a line.
    ClosedMidLine,
}

impl fmt::Display for DecodeError {
    /// The wording is part of the protocol: the server sends `ERROR {this}\n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::LineTooLong => "line too long",
            DecodeError::InvalidUtf8 => "invalid utf-8",
            DecodeError::ClosedMidLine => "connection closed mid-line",
        })
    }
}

impl std::error::Error for DecodeError {}

// ANCHOR: decoder
/// An incremental line decoder: push bytes in as they arrive, take lines out.
///
/// It never blocks and never reads a socket itself, so the same decoder serves the
/// blocking client of stage 0 and every event loop after it. A line split over many
/// reads and many lines in one read are the normal case, not the exception.
#[derive(Debug, Default)]
pub struct LineDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline, so a line that trickles in byte by
    /// byte is scanned once, not once per read.
    scanned: usize,
}

impl LineDecoder {
    /// An empty decoder.
    pub fn new() -> LineDecoder {
        LineDecoder::default()
    }

    /// Appends bytes just read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its `\n` (or `\r\n`), or `Ok(None)` until more
    /// bytes arrive.
    ///
    /// An error is final: the stream cannot be resynchronised, so the caller should
    /// report it and close the connection.
    pub fn next_line(&mut self) -> Result<Option<String>, DecodeError> {
        let Some(offset) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            // Refuse an over-long line as soon as it is over-long: a peer that never
            // sends a newline must not make us buffer without bound. A trailing `\r` may
            // be the start of a `\r\n`.
            let limit = MAX_LINE_LEN + usize::from(self.buf.last() == Some(&b'\r'));
            return if self.buf.len() > limit {
                Err(DecodeError::LineTooLong)
            } else {
                Ok(None)
            };
        };
        let newline = self.scanned + offset;
        let crlf = newline > 0 && self.buf[newline - 1] == b'\r';
        let end = newline - usize::from(crlf);
        if end > MAX_LINE_LEN {
            return Err(DecodeError::LineTooLong);
        }
        let rest = self.buf.split_off(newline + 1);
        let mut line = std::mem::replace(&mut self.buf, rest);
        line.truncate(end); // the '\n' or "\r\n"
        self.scanned = 0;
        String::from_utf8(line)
            .map(Some)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Call at end of stream: an error if a partial line was left unfinished.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::ClosedMidLine)
        }
    }

    /// Bytes received but not yet returned as a line.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
// ANCHOR_END: decoder

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(decoder: &mut LineDecoder) -> Result<Vec<String>, DecodeError> {
        let mut out = Vec::new();
        while let Some(line) = decoder.next_line()? {
            out.push(line);
        }
        Ok(out)
    }

    #[test]
    fn a_line_split_over_many_reads() {
        let mut decoder = LineDecoder::new();
        for byte in b"Request 42" {
            decoder.push(std::slice::from_ref(byte));
            assert_eq!(decoder.next_line(), Ok(None));
        }
        decoder.push(b"\n");
        assert_eq!(decoder.next_line(), Ok(Some("Request 42".into())));
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn many_lines_in_one_read() {
        let mut decoder = LineDecoder::new();
        decoder.push(b"Request 3\nRequest 2\nRequest 1\nRequest");
        assert_eq!(
            lines(&mut decoder),
            Ok(vec![
                "Request 3".into(),
                "Request 2".into(),
                "Request 1".into()
            ])
        );
        assert_eq!(decoder.buffered(), "Request".len());
        decoder.push(b" 0\n");
        assert_eq!(lines(&mut decoder), Ok(vec!["Request 0".into()]));
    }

    #[test]
    fn empty_lines_are_lines() {
        let mut decoder = LineDecoder::new();
        decoder.push(b"\n\n");
        assert_eq!(lines(&mut decoder), Ok(vec![String::new(), String::new()]));
    }

    #[test]
    fn the_longest_line_is_accepted_one_more_byte_is_not() {
        let mut decoder = LineDecoder::new();
        decoder.push(&[b'x'; MAX_LINE_LEN]);
        assert_eq!(decoder.next_line(), Ok(None));
        decoder.push(b"\n");
        assert_eq!(decoder.next_line().unwrap().unwrap().len(), MAX_LINE_LEN);

        let mut decoder = LineDecoder::new();
        decoder.push(&[b'x'; MAX_LINE_LEN + 1]);
        decoder.push(b"\n");
        assert_eq!(decoder.next_line(), Err(DecodeError::LineTooLong));
    }

    #[test]
    fn an_oversized_line_is_refused_before_its_newline_arrives() {
        let mut decoder = LineDecoder::new();
        for _ in 0..=MAX_LINE_LEN / 100 {
            decoder.push(&[b'x'; 100]);
            if decoder.buffered() <= MAX_LINE_LEN {
                assert_eq!(decoder.next_line(), Ok(None));
            }
        }
        assert_eq!(decoder.next_line(), Err(DecodeError::LineTooLong));
    }

    #[test]
    fn crlf_ends_a_line_too() {
        let mut decoder = LineDecoder::new();
        decoder.push(b"Request 1\r\nRequest 2\nRequest\r3\r");
        assert_eq!(
            lines(&mut decoder),
            Ok(vec!["Request 1".into(), "Request 2".into()])
        );
        // A `\r` split from its `\n` by the network is still a line end; one inside a
        // line is just a byte of the line.
        decoder.push(b"\n");
        assert_eq!(decoder.next_line(), Ok(Some("Request\r3".into())));
        // The `\r` does not count towards the longest line.
        let mut decoder = LineDecoder::new();
        decoder.push(&[b'x'; MAX_LINE_LEN]);
        decoder.push(b"\r");
        assert_eq!(decoder.next_line(), Ok(None));
        decoder.push(b"\n");
        assert_eq!(decoder.next_line().unwrap().unwrap().len(), MAX_LINE_LEN);
    }

    #[test]
    fn invalid_utf8() {
        let mut decoder = LineDecoder::new();
        decoder.push(b"Request \xff\xfe\n");
        assert_eq!(decoder.next_line(), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn a_multibyte_character_split_between_reads_is_fine() {
        let mut decoder = LineDecoder::new();
        let text = "Requête ✓\n".as_bytes();
        let (a, b) = text.split_at(5); // inside the 'ê'
        decoder.push(a);
        assert_eq!(decoder.next_line(), Ok(None));
        decoder.push(b);
        assert_eq!(decoder.next_line(), Ok(Some("Requête ✓".into())));
    }

    #[test]
    fn eof_mid_line() {
        let mut decoder = LineDecoder::new();
        decoder.push(b"Request 1\nRequest 2");
        assert_eq!(decoder.next_line(), Ok(Some("Request 1".into())));
        assert_eq!(decoder.next_line(), Ok(None));
        assert_eq!(decoder.finish(), Err(DecodeError::ClosedMidLine));
    }

    #[test]
    fn error_wording_is_the_protocols() {
        assert_eq!(DecodeError::LineTooLong.to_string(), "line too long");
        assert_eq!(DecodeError::InvalidUtf8.to_string(), "invalid utf-8");
        assert_eq!(request(7), "Request 7\n");
        assert_eq!(expected_response(7), "Request 7");
    }
}
