//! The bounded reader of a child's output: whatever a child prints, Visor holds at most one
//! fixed-size chunk and one line of it.
//!
//! [`LineReader`] reads a stream in chunks of [`CHUNK`] bytes and hands out lines of at most
//! [`LINE_LIMIT`] bytes; of a longer line the rest is skipped chunk by chunk, never buffered.
//! [`relay`] passes the lines a [`Budget`] admits on to the log: a hook run may log at most
//! [`RUN_LINES`] lines or [`RUN_BYTES`] bytes (both streams together), and the rest is only
//! counted, for one line saying what was dropped ([`Counts::dropped`]). [`read_capped`]
//! keeps the first bytes of a stream up to a limit, for a short command whose output is
//! parsed, and [`excerpt`] cuts captured text before it goes into a message.

use std::io::{ErrorKind, Read};
use std::sync::Mutex;

/// The size of one read.
pub const CHUNK: usize = 8 * 1024;
/// The longest line passed on; the rest of a longer line is skipped.
pub const LINE_LIMIT: usize = 4096;
/// The most lines a hook run may log (both streams together).
pub const RUN_LINES: u64 = 1000;
/// The most bytes a hook run may log (both streams together).
pub const RUN_BYTES: u64 = 256 * 1024;

/// A stream split into lines of at most [`LINE_LIMIT`] bytes, read [`CHUNK`] bytes at a time.
pub struct LineReader<R> {
    inner: R,
    chunk: Box<[u8]>,
    start: usize,
    end: usize,
    line: Vec<u8>,
    done: bool,
}

/// One line (without its newline; the last line of a stream may have none).
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub text: &'a [u8],
    /// Bytes of the line beyond [`LINE_LIMIT`], skipped; 0 when the line was not cut.
    pub skipped: u64,
    /// Ended by a newline (the last line of a stream may not be).
    pub ended: bool,
}

impl Line<'_> {
    /// The bytes the line took in the stream: its text, what was skipped, its newline.
    pub fn size(&self) -> u64 {
        self.text.len() as u64 + self.skipped + u64::from(self.ended)
    }
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner,
            chunk: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            line: Vec::with_capacity(LINE_LIMIT),
            done: false,
        }
    }

    /// The next line, or `None` at the end of the stream (a read error ends it too).
    pub fn next_line(&mut self) -> Option<Line<'_>> {
        self.line.clear();
        let mut skipped: u64 = 0;
        let mut any = false;
        loop {
            if self.start == self.end {
                if self.done {
                    return any.then_some(Line {
                        text: &self.line,
                        skipped,
                        ended: false,
                    });
                }
                match self.inner.read(&mut self.chunk) {
                    Ok(0) => self.done = true,
                    Ok(n) => {
                        self.start = 0;
                        self.end = n;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => self.done = true,
                }
                continue;
            }
            any = true;
            let available = &self.chunk[self.start..self.end];
            let (piece, ends_line) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            let room = LINE_LIMIT - self.line.len();
            let kept = piece.len().min(room);
            self.line.extend_from_slice(&piece[..kept]);
            skipped += (piece.len() - kept) as u64;
            self.start += piece.len() + usize::from(ends_line);
            if ends_line {
                return Some(Line {
                    text: &self.line,
                    skipped,
                    ended: true,
                });
            }
        }
    }
}

/// What a [`Budget`] let through and what it dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    /// The bytes of the lines logged, newlines included.
    pub bytes: u64,
    pub dropped_lines: u64,
    /// Bytes not logged: those of dropped lines (newlines included) and the skipped rest of
    /// cut lines.
    pub dropped_bytes: u64,
}

impl Counts {
    /// `N lines and M bytes of output were not logged (...)`, when anything was dropped.
    pub fn dropped(&self, limits: &str) -> Option<String> {
        (self.dropped_lines > 0 || self.dropped_bytes > 0).then(|| {
            format!(
                "{} lines and {} bytes of output were not logged ({limits})",
                self.dropped_lines, self.dropped_bytes
            )
        })
    }
}

/// How much output may be logged, shared by the readers of both streams of one run. Once a
/// line is refused, every later line is refused too (the log never has holes in the middle).
pub struct Budget {
    max_lines: u64,
    max_bytes: u64,
    state: Mutex<(Counts, bool)>,
}

impl Budget {
    pub fn new(max_lines: u64, max_bytes: u64) -> Budget {
        Budget {
            max_lines,
            max_bytes,
            state: Mutex::new((Counts::default(), false)),
        }
    }

    /// The budget of one hook run: [`RUN_LINES`] lines or [`RUN_BYTES`] bytes.
    pub fn per_run() -> Budget {
        Budget::new(RUN_LINES, RUN_BYTES)
    }

    /// Whether a line that logs `len` bytes (with `skipped` more cut off) may be logged;
    /// counted either way.
    pub fn admit(&self, len: u64, skipped: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (counts, full) = &mut *state;
        if !*full && counts.lines < self.max_lines && counts.bytes + len <= self.max_bytes {
            counts.lines += 1;
            counts.bytes += len;
            counts.dropped_bytes += skipped;
            return true;
        }
        *full = true;
        counts.dropped_lines += 1;
        counts.dropped_bytes += len + skipped;
        false
    }

    /// Admits nothing more (the run is over) and returns the counts.
    pub fn close(&self) -> Counts {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = true;
        state.0
    }
}

/// Reads `stream` to its end and hands each line `budget` admits to `emit`; memory stays at
/// one chunk and one line whatever the stream holds.
pub fn relay<R: Read>(stream: R, budget: &Budget, mut emit: impl FnMut(&[u8])) {
    let mut reader = LineReader::new(stream);
    while let Some(line) = reader.next_line() {
        let logged = line.size() - line.skipped;
        if budget.admit(logged, line.skipped) {
            emit(line.text);
        }
    }
}

/// The first `limit` bytes of `stream`, read [`CHUNK`] bytes at a time; reading stops at the
/// limit. The buffer never grows beyond `limit`.
pub fn read_capped<R: Read>(mut stream: R, limit: usize) -> Vec<u8> {
    let mut data: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK.min(limit.max(1))];
    while data.len() < limit {
        let want = chunk.len().min(limit - data.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => {
                if data.capacity() < data.len() + n {
                    let grown = (data.capacity() * 2).max(data.len() + n).min(limit);
                    data.reserve_exact(grown - data.len());
                }
                data.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    data
}

/// `text` trimmed and cut to at most `limit` bytes (at a character boundary), with
/// `... (N more bytes)` when cut: captured output quoted in a message.
pub fn excerpt(text: &str, limit: usize) -> String {
    let text = text.trim();
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} more bytes)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A reader handing out at most `step` bytes per read, so lines cross chunk boundaries
    /// at every position.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn lines_of<R: Read>(reader: R) -> Vec<(Vec<u8>, u64)> {
        let mut lines = LineReader::new(reader);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line() {
            out.push((line.text.to_vec(), line.skipped));
            assert_eq!(
                line.size(),
                line.text.len() as u64 + line.skipped + u64::from(line.ended)
            );
        }
        out
    }

    #[test]
    fn lines_are_split_whatever_the_reads_return() {
        let data = b"one\n\ntwo\nlast without newline";
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                lines_of(Trickle { data, step }),
                vec![
                    (b"one".to_vec(), 0),
                    (Vec::new(), 0),
                    (b"two".to_vec(), 0),
                    (b"last without newline".to_vec(), 0),
                ],
                "step {step}"
            );
        }
        assert!(lines_of(Cursor::new(b"")).is_empty());
        assert_eq!(lines_of(Cursor::new(b"\n")), vec![(Vec::new(), 0)]);
    }

    #[test]
    fn an_endless_line_is_cut_and_the_rest_skipped_without_buffering() {
        let total: u64 = 50 * 1024 * 1024;
        let stream = std::io::repeat(b'y')
            .take(total)
            .chain(Cursor::new(b"\nafter\n"));
        let mut reader = LineReader::new(stream);
        let line = reader.next_line().unwrap();
        assert_eq!(line.text.len(), LINE_LIMIT);
        assert_eq!(line.skipped, total - LINE_LIMIT as u64);
        assert_eq!(line.size(), total + 1);
        assert_eq!(
            reader.line.capacity(),
            LINE_LIMIT,
            "the line buffer never grew"
        );
        assert_eq!(reader.next_line().unwrap().text, b"after");
        assert!(reader.next_line().is_none());
    }

    #[test]
    fn a_run_logs_at_most_its_lines_then_counts_what_it_dropped() {
        let budget = Budget::new(3, 1000);
        let mut logged = Vec::new();
        relay(Cursor::new(b"a\nbb\nccc\ndddd\ne\n"), &budget, |l| {
            logged.push(l.to_vec())
        });
        assert_eq!(logged, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
        let counts = budget.close();
        assert_eq!(
            counts,
            Counts {
                lines: 3,
                bytes: 9,
                dropped_lines: 2,
                dropped_bytes: 7,
            }
        );
        assert_eq!(
            counts.dropped("limits").unwrap(),
            "2 lines and 7 bytes of output were not logged (limits)"
        );
        assert!(!budget.admit(1, 0), "closed");
    }

    #[test]
    fn a_run_logs_at_most_its_bytes_and_nothing_after_the_first_refusal() {
        let budget = Budget::new(100, 10);
        assert!(budget.admit(8, 0));
        assert!(!budget.admit(3, 0), "would pass 10 bytes");
        assert!(!budget.admit(1, 0), "nothing after a refusal");
        assert!(!budget.admit(0, 0));
        let counts = budget.close();
        assert_eq!(
            (counts.lines, counts.bytes, counts.dropped_lines),
            (1, 8, 3)
        );
        assert_eq!(Budget::new(5, 5).close().dropped("x"), None);
    }

    #[test]
    fn yes_for_a_while_logs_at_most_the_run_s_lines() {
        let budget = Budget::per_run();
        let mut count = 0u64;
        let stream = std::io::repeat(b'y').take(400_000).map_newlines();
        relay(stream, &budget, |_| count += 1);
        assert_eq!(count, RUN_LINES);
        let counts = budget.close();
        assert_eq!(counts.lines + counts.dropped_lines, 200_000);
    }

    /// `y\n` repeated: every second byte of the stream becomes a newline.
    trait MapNewlines: Read + Sized {
        fn map_newlines(self) -> Alternate<Self> {
            Alternate {
                inner: self,
                odd: false,
            }
        }
    }
    impl<R: Read> MapNewlines for R {}
    struct Alternate<R> {
        inner: R,
        odd: bool,
    }
    impl<R: Read> Read for Alternate<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            for byte in &mut buf[..n] {
                if self.odd {
                    *byte = b'\n';
                }
                self.odd = !self.odd;
            }
            Ok(n)
        }
    }

    #[test]
    fn a_capped_read_keeps_the_first_bytes_and_never_holds_more() {
        let limit = 1 << 20;
        let data = read_capped(std::io::repeat(b'a').take(3 * limit as u64), limit);
        assert_eq!(data.len(), limit);
        assert!(data.capacity() <= limit, "capacity {}", data.capacity());
        assert_eq!(read_capped(Cursor::new(b"short"), limit), b"short");
        assert!(read_capped(Cursor::new(b"x"), 0).is_empty());
    }

    #[test]
    fn excerpts_are_cut_at_a_character_boundary() {
        assert_eq!(excerpt("  short \n", 10), "short");
        assert_eq!(excerpt("aaaaé", 5), "aaaa... (2 more bytes)");
        assert_eq!(
            excerpt(&"x".repeat(5000), 4096),
            format!("{}... (904 more bytes)", "x".repeat(4096))
        );
    }
}
