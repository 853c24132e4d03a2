//! The Apache workload: a private apache2 instance serving a static file set on loopback,
//! driven by ApacheBench (`ab`) at several concurrency levels, as the paper measured Apache.
//!
//! The server runs from its own configuration in a fresh directory (ServerRoot, DocumentRoot,
//! PidFile, logs, port), in the foreground as our child, so it needs neither the distribution's
//! service setup nor an init system. Each (file size, concurrency) pair yields two records,
//! requests/s and transfer rate; any failed request or non-2xx response fails both.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::ab::AbReport;
use crate::output::RecordSink;
use crate::record::{params, Metric, Params, Record, Suite};
use crate::size::format_size;
use crate::{stats, sys};

/// The benchmark name of every record of this suite.
pub const BENCHMARK: &str = "ab";

/// Settings of an `apache` run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The apache2 binary (Debian: `/usr/sbin/apache2`).
    pub apache_bin: PathBuf,
    /// The `ab` binary (Debian's apache2-utils: `/usr/bin/ab`).
    pub ab_bin: PathBuf,
    /// Where apache2's shared modules live (Debian: `/usr/lib/apache2/modules`).
    pub modules_dir: PathBuf,
    /// Concurrency levels, one `ab -c` each.
    pub concurrency: Vec<u64>,
    /// Requests per `ab` run; `None` adapts the count to the budget.
    pub requests: Option<u64>,
    /// Sizes in bytes of the static files served, one set of runs each.
    pub file_sizes: Vec<u64>,
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    /// `ab` runs per (size, concurrency), each one sample.
    pub samples: usize,
    /// Target guest time per (size, concurrency) in ns, warm-up included.
    pub budget_ns: u64,
    /// Whether `ab` uses HTTP keep-alive (`-k`); off makes every request a new connection.
    pub keepalive: bool,
    /// Directory for the server's root (config, documents, logs), removed afterwards.
    pub dir: PathBuf,
    /// How long apache2 may take to accept connections, and each `ab` run to finish
    /// (wall time: these only guard against hangs).
    pub timeout: Duration,
}

/// Fewest requests per `ab` run: enough that every one of `concurrency` connections is
/// reused several times, and ab's mean is not dominated by ramp-up.
fn min_requests(concurrency: u64) -> u64 {
    (concurrency * 4).max(100)
}

/// Most requests the budget calibration may choose for one `ab` run.
const MAX_REQUESTS: u64 = 1_000_000;

/// Runs every (file size, concurrency) of `opts`, two records each, streamed to `sink`.
///
/// If apache2 cannot be started, every record is emitted as failed with the reason.
///
/// # Errors
/// Only failures to write to `sink`.
pub fn run<W: std::io::Write>(opts: &Options, sink: &mut RecordSink<W>) -> anyhow::Result<()> {
    let base = |size: u64, c: u64| {
        params([
            ("file_bytes", size.into()),
            ("concurrency", c.into()),
            (
                "keepalive",
                (if opts.keepalive { "on" } else { "off" }).into(),
            ),
        ])
    };
    let server = match Server::start(opts) {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("starting apache2: {e:#}");
            for &size in &opts.file_sizes {
                for &c in &opts.concurrency {
                    for metric in [Metric::RequestsPerSec, Metric::TransferKbPerSec] {
                        let r = Record::failed(
                            Suite::Apache,
                            BENCHMARK,
                            base(size, c),
                            metric,
                            &reason,
                        );
                        sink.emit(&r)?;
                    }
                }
            }
            return Ok(());
        }
    };
    eprintln!("apache: serving on 127.0.0.1:{}", server.port);
    for &size in &opts.file_sizes {
        for &c in &opts.concurrency {
            let url = format!("http://127.0.0.1:{}/{}", server.port, file_name(size));
            let [rps, kbps] = drive(opts, &url, c, base(size, c));
            sink.emit(&rps)?;
            sink.emit(&kbps)?;
        }
    }
    drop(server);
    Ok(())
}

/// Warms up, picks the request count, runs the samples; returns the requests/s and
/// transfer-rate records.
fn drive(opts: &Options, url: &str, concurrency: u64, base: Params) -> [Record; 2] {
    let failed = |reason: String, base: &Params| {
        [Metric::RequestsPerSec, Metric::TransferKbPerSec]
            .map(|m| Record::failed(Suite::Apache, BENCHMARK, base.clone(), m, reason.clone()))
    };
    // Warm to a steady state first ([`crate::warmup`]): passes of at least
    // `min_requests` requests, sized to a quarter of a sample; the last one prices a request.
    let target_ns = stats::sample_target_ns(opts.budget_ns, opts.samples, 0);
    let mut last = (0u64, 0.0f64);
    let warmed = crate::warmup::warm_up(target_ns, crate::warmup::translated_now, |n| {
        let n = n.max(min_requests(concurrency));
        let r = run_ab(opts, url, n, concurrency)?;
        last = (n, r.time_taken_s);
        Ok::<_, anyhow::Error>((r.time_taken_s * 1e9) as u64)
    });
    let warm = match warmed {
        Ok(w) => w,
        Err(e) => return failed(format!("warm-up: {e:#}"), &base),
    };
    if last.0 == 0 {
        // No translator to warm: one pass still prices a request.
        let n = min_requests(concurrency);
        match run_ab(opts, url, n, concurrency) {
            Ok(r) => last = (n, r.time_taken_s),
            Err(e) => return failed(format!("warm-up: {e:#}"), &base),
        }
    }
    let (warm_n, warm_s) = last;
    let requests = opts.requests.unwrap_or_else(|| {
        let per_req_ns = warm_s * 1e9 / warm_n as f64;
        let n = if per_req_ns > 0.0 {
            (target_ns as f64 / per_req_ns) as u64
        } else {
            MAX_REQUESTS
        };
        n.clamp(min_requests(concurrency), MAX_REQUESTS)
    });
    let requests = requests.max(concurrency);
    // The request count is only a parameter when it was given: adapted to the budget it
    // differs from run to run (it is the record's iterations_per_sample either way), and a
    // parameter must identify the configuration across modes and rounds.
    let mut p = base;
    if opts.requests.is_some() {
        p.insert("requests".into(), requests.into());
    }
    let mut rps = Vec::new();
    let mut kbps = Vec::new();
    let mut problem = None;
    for _ in 0..opts.samples {
        match run_ab(opts, url, requests, concurrency) {
            Ok(r) => {
                rps.push(r.requests_per_sec);
                kbps.push(r.transfer_kb_per_sec);
            }
            Err(e) => {
                problem = Some(format!("{e:#}"));
                break;
            }
        }
    }
    let rec = |m, samples| {
        let mut r = Record::ok(Suite::Apache, BENCHMARK, p.clone(), m, samples, requests);
        r.set_warm_up(&warm);
        r
    };
    let records = [
        rec(Metric::RequestsPerSec, rps),
        rec(Metric::TransferKbPerSec, kbps),
    ];
    match problem {
        Some(reason) => records.map(|r| r.into_failed(reason.clone())),
        None => records,
    }
}

/// Runs `ab -n requests -c concurrency url` and parses its report.
///
/// # Errors
/// ab missing or killed, a timeout, an unparseable report, or a report with failed
/// requests, non-2xx responses or missing completions.
fn run_ab(opts: &Options, url: &str, requests: u64, concurrency: u64) -> anyhow::Result<AbReport> {
    let mut cmd = Command::new(&opts.ab_bin);
    // -q: no progress lines; -r: count socket errors instead of aborting, so they show up
    // as failed requests in the report.
    cmd.args([
        "-q",
        "-r",
        "-n",
        &requests.to_string(),
        "-c",
        &concurrency.to_string(),
    ]);
    if opts.keepalive {
        cmd.arg("-k");
    }
    cmd.arg(url);
    let out = run_with_timeout(cmd, opts.timeout)
        .with_context(|| format!("running {}", opts.ab_bin.display()))?;
    let report = AbReport::parse(&out.stdout).with_context(|| {
        format!(
            "ab exited with {}; stderr: {}",
            out.status,
            tail(&out.stderr, 400)
        )
    })?;
    if let Some(problem) = report.problem(requests) {
        bail!("{problem} (-n {requests} -c {concurrency})");
    }
    Ok(report)
}

struct Output {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion with stdout and stderr captured in files, killing it after
/// `timeout` of wall time. Polls instead of blocking so a hung child cannot hang us.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> anyhow::Result<Output> {
    let mut out = tempfile::tempfile()?;
    let mut err = tempfile::tempfile()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .spawn()?;
    let status = wait_until(&mut child, Instant::now() + timeout)?;
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("timed out after {} s", timeout.as_secs());
    };
    let read = |f: &mut fs::File| -> anyhow::Result<String> {
        use std::io::Seek;
        f.rewind()?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        Ok(s)
    };
    Ok(Output {
        status,
        stdout: read(&mut out)?,
        stderr: read(&mut err)?,
    })
}

/// Waits for `child` until `deadline`; `None` if it is still running then.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `max` bytes of `s` (on a char boundary), trimmed, for error messages.
fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].trim()
}

/// Name under the document root of the file of `size` bytes.
fn file_name(size: u64) -> String {
    format!("file_{}", format_size(size))
}

/// A running apache2 with its own root directory; stopped and cleaned up on drop.
struct Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Server {
    fn start(opts: &Options) -> anyhow::Result<Server> {
        if !opts.apache_bin.exists() {
            bail!("{} not found (install apache2)", opts.apache_bin.display());
        }
        let root = tempfile::Builder::new()
            .prefix("kdbt-apache.")
            .tempdir_in(&opts.dir)
            .with_context(|| format!("creating a server root in {}", opts.dir.display()))?;
        let port = match opts.port {
            0 => free_port()?,
            p => p,
        };
        let conf = write_root(root.path(), port, opts)?;
        let log = fs::File::create(root.path().join("stderr.log"))?;
        let child = Command::new(&opts.apache_bin)
            .arg("-f")
            .arg(&conf)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so teardown can reach every worker it forked.
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {}", opts.apache_bin.display()))?;
        let mut server = Server { child, port, root };
        server.wait_ready(opts.timeout)?;
        Ok(server)
    }

    /// Polls until the port accepts connections or apache2 exits.
    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("apache2 exited with {status}: {}", self.logs());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "apache2 did not accept connections on port {} within {} s: {}",
                    self.port,
                    timeout.as_secs(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The tails of apache2's stderr and error log, for failure reasons.
    fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.root.path().join(name)).unwrap_or_default();
        let stderr = read("stderr.log");
        let error_log = read("error.log");
        format!(
            "stderr: {:?}; error.log: {:?}",
            tail(&stderr, 400),
            tail(&error_log, 400)
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as sys::Pid;
        // SIGTERM to the parent is apache's "stop now": it terminates its workers first.
        let _ = sys::kill(pid, libc::SIGTERM);
        let stopped = wait_until(&mut self.child, Instant::now() + Duration::from_secs(60));
        if !matches!(stopped, Ok(Some(_))) {
            let _ = sys::kill(pid, libc::SIGKILL);
            let _ = self.child.wait();
        }
        // Any worker that outlived its parent is still in the group.
        let _ = sys::kill(-pid, libc::SIGKILL);
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The account apache2's workers switch to when started as root: Debian's `www-data`, or
/// `nobody` on a system without it.
fn worker_account() -> (&'static str, &'static str) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    if passwd.lines().any(|l| l.starts_with("www-data:")) {
        ("www-data", "www-data")
    } else {
        ("nobody", "nogroup")
    }
}

/// Lays out the server root: `htdocs/` with one file per size, and `httpd.conf`, whose path
/// is returned. Everything is world-readable because workers run as another user under root.
fn write_root(root: &Path, port: u16, opts: &Options) -> anyhow::Result<PathBuf> {
    let docs = root.join("htdocs");
    fs::create_dir(&docs)?;
    for &size in &opts.file_sizes {
        // Printable, non-repeating-per-line content so nothing compresses it by accident.
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let path = docs.join(file_name(size));
        fs::write(&path, body)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    }
    fs::set_permissions(&docs, fs::Permissions::from_mode(0o755))?;
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
    let conf = root.join("httpd.conf");
    fs::write(&conf, config(root, &docs, port, opts))?;
    Ok(conf)
}

/// apache2's configuration: the event MPM with Debian's default pool sizes, the modules a
/// static file server needs, and every path inside `root`.
fn config(root: &Path, docs: &Path, port: u16, opts: &Options) -> String {
    let r = root.display();
    let d = docs.display();
    let m = opts.modules_dir.display();
    let user = if sys::geteuid() == 0 {
        let (u, g) = worker_account();
        format!("User {u}\nGroup {g}\n")
    } else {
        String::new()
    };
    format!(
        r#"ServerRoot "{r}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{r}/httpd.pid"
DefaultRuntimeDir "{r}"
ErrorLog "{r}/error.log"
LogLevel warn
LoadModule mpm_event_module "{m}/mod_mpm_event.so"
LoadModule authz_core_module "{m}/mod_authz_core.so"
{user}StartServers 2
MinSpareThreads 25
MaxSpareThreads 75
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150
MaxConnectionsPerChild 0
DocumentRoot "{d}"
<Directory "{d}">
    Require all granted
</Directory>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            apache_bin: "/nonexistent/apache2".into(),
            ab_bin: "/nonexistent/ab".into(),
            modules_dir: "/usr/lib/apache2/modules".into(),
            concurrency: vec![1, 8],
            requests: Some(10),
            file_sizes: vec![1024, 10 * 1024],
            port: 0,
            samples: 1,
            budget_ns: 1_000_000,
            keepalive: false,
            dir: std::env::temp_dir(),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn config_keeps_every_path_inside_the_root() {
        let root = Path::new("/srv/x");
        let c = config(root, &root.join("htdocs"), 8080, &opts());
        assert!(c.contains("Listen 127.0.0.1:8080"));
        assert!(c.contains("ServerRoot \"/srv/x\""));
        assert!(c.contains("PidFile \"/srv/x/httpd.pid\""));
        assert!(c.contains("DocumentRoot \"/srv/x/htdocs\""));
        assert!(c.contains("mod_mpm_event.so"));
    }

    #[test]
    fn root_holds_one_file_of_each_size() {
        let dir = tempfile::tempdir().unwrap();
        let conf = write_root(dir.path(), 8080, &opts()).unwrap();
        assert!(conf.exists());
        for size in [1024u64, 10240] {
            let meta = fs::metadata(dir.path().join("htdocs").join(file_name(size))).unwrap();
            assert_eq!(meta.len(), size);
        }
    }

    #[test]
    fn missing_apache_fails_every_record_and_keeps_going() {
        let mut sink = RecordSink::new(Vec::new());
        run(&opts(), &mut sink).unwrap();
        // 2 sizes x 2 concurrencies x 2 metrics.
        assert_eq!((sink.written(), sink.failed()), (8, 8));
        let text = String::from_utf8(sink.into_inner()).unwrap();
        let first: Record = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert!(first.reason.unwrap().contains("not found"));
    }

    #[test]
    fn timeout_kills_a_hanging_command() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let e = run_with_timeout(cmd, Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(e.to_string().contains("timed out"));
    }

    #[test]
    fn request_floor_covers_concurrency() {
        assert_eq!(min_requests(1), 100);
        assert_eq!(min_requests(32), 128);
    }
}
