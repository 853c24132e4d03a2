//! Parser of ApacheBench (`ab`, apache2-utils 2.3) reports.
//!
//! `ab` prints a fixed `Label:   value` block; this reads the lines the Apache driver reports
//! and the ones that make a run invalid. Failed requests and non-2xx responses are
//! distinguished because `ab` counts them apart: a 404 for every request is "Failed
//! requests: 0" with "Non-2xx responses: N".

use std::fmt;

/// `ab`'s breakdown of failed requests (its line under "Failed requests").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureBreakdown {
    /// Connections that could not be established.
    pub connect: u64,
    /// Errors receiving a response (including connections reset or closed early).
    pub receive: u64,
    /// Responses whose length differed from the first response's.
    pub length: u64,
    /// Other socket exceptions.
    pub exceptions: u64,
}

/// The numbers of one `ab` run.
#[derive(Debug, Clone, PartialEq)]
pub struct AbReport {
    /// "Concurrency Level".
    pub concurrency: u64,
    /// "Document Length" in bytes, as the first response had it.
    pub document_length: u64,
    /// "Time taken for tests" in seconds.
    pub time_taken_s: f64,
    /// "Complete requests".
    pub complete_requests: u64,
    /// "Failed requests".
    pub failed_requests: u64,
    /// The breakdown `ab` prints when failed requests > 0.
    pub failure_breakdown: Option<FailureBreakdown>,
    /// "Non-2xx responses" (absent from the report when 0).
    pub non_2xx_responses: u64,
    /// "Write errors" (absent when 0).
    pub write_errors: u64,
    /// "Requests per second", mean over the run.
    pub requests_per_sec: f64,
    /// "Transfer rate" in KB/s received (ab's KB = 1024 bytes).
    pub transfer_kb_per_sec: f64,
}

/// Why a text is not a usable `ab` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A line every complete report has is missing (ab aborted, or this is not ab output).
    Missing(&'static str),
    /// A line is present but its value is not a number.
    BadValue {
        /// The label of the line.
        label: &'static str,
        /// The text found after the label.
        value: String,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Missing(label) => write!(f, "ab output has no `{label}` line"),
            ParseError::BadValue { label, value } => {
                write!(f, "ab output has `{label}` with unreadable value `{value}`")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// The text after `label:` on the first line starting with it, trimmed.
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(label)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The first number of a field (`5029.17 [#/sec] (mean)` → 5029.17).
fn number<T: std::str::FromStr>(text: &str, label: &'static str) -> Result<Option<T>, ParseError> {
    let Some(value) = field(text, label) else {
        return Ok(None);
    };
    let first = value.split_whitespace().next().unwrap_or("");
    first.parse().map(Some).map_err(|_| ParseError::BadValue {
        label,
        value: value.to_owned(),
    })
}

fn required<T: std::str::FromStr>(text: &str, label: &'static str) -> Result<T, ParseError> {
    number(text, label)?.ok_or(ParseError::Missing(label))
}

/// Reads `(Connect: 0, Receive: 0, Length: 1999, Exceptions: 0)`.
fn breakdown(text: &str) -> Option<FailureBreakdown> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("(Connect:"))?;
    let inner = line.trim_start_matches('(').trim_end_matches(')');
    let mut b = FailureBreakdown::default();
    for part in inner.split(',') {
        let (k, v) = part.split_once(':')?;
        let v: u64 = v.trim().parse().ok()?;
        match k.trim() {
            "Connect" => b.connect = v,
            "Receive" => b.receive = v,
            "Length" => b.length = v,
            "Exceptions" => b.exceptions = v,
            _ => {}
        }
    }
    Some(b)
}

impl AbReport {
    /// Parses the stdout of one `ab` run.
    ///
    /// # Errors
    /// [`ParseError::Missing`] when a summary line is absent (ab stopped early);
    /// [`ParseError::BadValue`] when one is not a number.
    pub fn parse(text: &str) -> Result<AbReport, ParseError> {
        Ok(AbReport {
            concurrency: required(text, "Concurrency Level")?,
            document_length: required(text, "Document Length")?,
            time_taken_s: required(text, "Time taken for tests")?,
            complete_requests: required(text, "Complete requests")?,
            failed_requests: required(text, "Failed requests")?,
            failure_breakdown: breakdown(text),
            non_2xx_responses: number(text, "Non-2xx responses")?.unwrap_or(0),
            write_errors: number(text, "Write errors")?.unwrap_or(0),
            requests_per_sec: required(text, "Requests per second")?,
            transfer_kb_per_sec: required(text, "Transfer rate")?,
        })
    }

    /// Why this run does not count, if it does not: any failed request, non-2xx response or
    /// write error, or fewer completed requests than `expected`.
    pub fn problem(&self, expected_requests: u64) -> Option<String> {
        let mut problems = Vec::new();
        if self.failed_requests > 0 {
            let detail = self
                .failure_breakdown
                .map(|b| {
                    format!(
                        " (connect {}, receive {}, length {}, exceptions {})",
                        b.connect, b.receive, b.length, b.exceptions
                    )
                })
                .unwrap_or_default();
            problems.push(format!("{} failed requests{detail}", self.failed_requests));
        }
        if self.non_2xx_responses > 0 {
            problems.push(format!("{} non-2xx responses", self.non_2xx_responses));
        }
        if self.write_errors > 0 {
            problems.push(format!("{} write errors", self.write_errors));
        }
        if self.complete_requests < expected_requests {
            problems.push(format!(
                "{} of {expected_requests} requests completed",
                self.complete_requests
            ));
        }
        if problems.is_empty() {
            None
        } else {
            Some(format!("ab reported {}", problems.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = include_str!("../tests/fixtures/ab/success.txt");
    const NON_2XX: &str = include_str!("../tests/fixtures/ab/non_2xx.txt");
    const LENGTH: &str = include_str!("../tests/fixtures/ab/length_failures.txt");
    const SERVER_GONE: &str = include_str!("../tests/fixtures/ab/server_gone.txt");

    #[test]
    fn success_report_yields_rates_and_no_problem() {
        let r = AbReport::parse(SUCCESS).unwrap();
        assert_eq!(r.concurrency, 8);
        assert_eq!(r.document_length, 10240);
        assert_eq!(r.complete_requests, 500);
        assert_eq!(r.failed_requests, 0);
        assert_eq!(r.failure_breakdown, None);
        assert_eq!(r.non_2xx_responses, 0);
        assert_eq!(r.requests_per_sec, 5029.17);
        assert_eq!(r.transfer_kb_per_sec, 51401.65);
        assert_eq!(r.time_taken_s, 0.099);
        assert_eq!(r.problem(500), None);
    }

    #[test]
    fn all_404_is_a_problem_despite_zero_failed_requests() {
        let r = AbReport::parse(NON_2XX).unwrap();
        assert_eq!(r.failed_requests, 0);
        assert_eq!(r.non_2xx_responses, 200);
        assert_eq!(r.problem(200).unwrap(), "ab reported 200 non-2xx responses");
    }

    #[test]
    fn length_failures_are_reported_with_breakdown() {
        let r = AbReport::parse(LENGTH).unwrap();
        assert_eq!(r.failed_requests, 1999);
        assert_eq!(
            r.failure_breakdown,
            Some(FailureBreakdown {
                connect: 0,
                receive: 0,
                length: 1999,
                exceptions: 0
            })
        );
        let p = r.problem(2000).unwrap();
        assert!(p.contains("1999 failed requests"), "{p}");
        assert!(p.contains("length 1999"), "{p}");
        assert!(p.contains("1 non-2xx responses"), "{p}");
    }

    #[test]
    fn vanished_server_shows_receive_and_exception_failures() {
        let r = AbReport::parse(SERVER_GONE).unwrap();
        assert_eq!(r.failed_requests, 75);
        let b = r.failure_breakdown.unwrap();
        assert_eq!((b.receive, b.exceptions), (50, 25));
        assert_eq!(r.transfer_kb_per_sec, 0.0);
        assert!(r.problem(50).is_some());
    }

    #[test]
    fn fewer_completed_than_asked_is_a_problem() {
        let r = AbReport::parse(SUCCESS).unwrap();
        assert_eq!(
            r.problem(1000).unwrap(),
            "ab reported 500 of 1000 requests completed"
        );
    }

    #[test]
    fn truncated_report_names_the_missing_line() {
        let cut = &SUCCESS[..SUCCESS.find("Requests per second").unwrap()];
        assert_eq!(
            AbReport::parse(cut),
            Err(ParseError::Missing("Requests per second"))
        );
        assert_eq!(
            AbReport::parse("apr_socket_recv: Connection refused (111)\n"),
            Err(ParseError::Missing("Concurrency Level"))
        );
    }

    #[test]
    fn unreadable_number_is_a_bad_value() {
        let bad = SUCCESS.replace("Failed requests:        0", "Failed requests:        many");
        assert_eq!(
            AbReport::parse(&bad),
            Err(ParseError::BadValue {
                label: "Failed requests",
                value: "many".into()
            })
        );
    }

    #[test]
    fn write_errors_line_is_read_when_present() {
        let with = SUCCESS.replace(
            "Total transferred:",
            "Write errors:           3\nTotal transferred:",
        );
        let r = AbReport::parse(&with).unwrap();
        assert_eq!(r.write_errors, 3);
        assert_eq!(r.problem(500).unwrap(), "ab reported 3 write errors");
    }
}
