//! Streams [`Record`]s as JSON lines, flushing each so a reader sees results as they finish.

use std::io::{self, Write};

use crate::record::Record;

/// A JSON-lines writer that remembers whether any record failed (for the exit status).
pub struct RecordSink<W: Write> {
    out: W,
    failed: usize,
    written: usize,
}

impl RecordSink<io::Stdout> {
    /// A sink on the process's stdout; diagnostics must go to stderr, never here.
    pub fn stdout() -> Self {
        RecordSink::new(io::stdout())
    }
}

impl<W: Write> RecordSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: W) -> Self {
        RecordSink {
            out,
            failed: 0,
            written: 0,
        }
    }

    /// Writes `record` as one line and flushes.
    ///
    /// # Errors
    /// Any write error of the underlying stream (e.g. a closed pipe).
    pub fn emit(&mut self, record: &Record) -> io::Result<()> {
        if !record.is_ok() {
            self.failed += 1;
            if let Some(reason) = &record.reason {
                eprintln!("{}: failed: {reason}", record.benchmark);
            }
        }
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        self.written += 1;
        Ok(())
    }

    /// Number of failed records emitted so far.
    pub fn failed(&self) -> usize {
        self.failed
    }

    /// Number of records emitted so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Metric, Params, Suite};

    #[test]
    fn each_record_is_one_parseable_line_and_failures_are_counted() {
        let mut sink = RecordSink::new(Vec::new());
        let ok = Record::ok(
            Suite::Micro,
            "lat_syscall null",
            Params::new(),
            Metric::Latency,
            vec![0.1, 0.2],
            10,
        );
        let bad = Record::failed(
            Suite::Micro,
            "lat_tcp",
            Params::new(),
            Metric::Latency,
            "EADDRINUSE",
        );
        sink.emit(&ok).unwrap();
        sink.emit(&bad).unwrap();
        assert_eq!((sink.written(), sink.failed()), (2, 1));
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let lines: Vec<Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, vec![ok, bad]);
    }
}
