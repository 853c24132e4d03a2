//! Thin safe wrappers over the libc calls the benchmarks time; the only place raw `libc`
//! calls appear besides the signal handlers that must be `extern "C"`.
//!
//! The wrappers issue exactly one system call each (no retries, no allocation) so a timed loop
//! measures the call lmbench measures and nothing else.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

/// A process id.
pub type Pid = libc::pid_t;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// `getppid(2)`: lmbench's "null" system call (it cannot be cached by libc).
#[inline]
pub fn getppid() -> Pid {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::getppid() }
}

/// One `read(2)` into `buf`; returns the byte count (0 at end of file).
///
/// # Errors
/// The errno of the call (e.g. `EINTR`, `EBADF`).
#[inline]
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live, writable region of buf.len() bytes for the call's duration.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// One `write(2)` from `buf`; returns the byte count.
///
/// # Errors
/// The errno of the call (e.g. `EPIPE`).
#[inline]
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a live, readable region of buf.len() bytes for the call's duration.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// Reads until `buf` is full, retrying short reads (pipes and streams split messages).
///
/// # Errors
/// `UnexpectedEof` if the peer closed first; any errno of `read`.
pub fn read_exact(fd: BorrowedFd<'_>, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match read(fd, buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf = &mut buf[n..],
        }
    }
    Ok(())
}

/// Writes all of `buf`, retrying short writes.
///
/// # Errors
/// Any errno of `write` (`EPIPE` once the reader is gone).
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// A pipe as `(read end, write end)`, both close-on-exec.
///
/// # Errors
/// `EMFILE`/`ENFILE` when out of descriptors.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a writable array of two ints, as pipe2 requires.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `open(2)` of `path` with `flags` (O_CLOEXEC added) and mode 0644 for created files.
///
/// # Errors
/// The errno of the call (`ENOENT`, `EEXIST`, ...).
#[inline]
pub fn open(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated; the mode argument is read only with O_CREAT.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) })?;
    // SAFETY: open succeeded, so fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `close(2)`, reporting its error (dropping an `OwnedFd` would ignore it).
///
/// # Errors
/// The errno of the call.
#[inline]
pub fn close(fd: OwnedFd) -> io::Result<()> {
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: raw came from an OwnedFd we consumed, so it is open and closed exactly once.
    cvt(unsafe { libc::close(raw) }).map(drop)
}

/// `stat(2)` of `path`; the result is discarded, as lmbench's `lat_syscall stat` does.
///
/// # Errors
/// The errno of the call.
#[inline]
pub fn stat(path: &CStr) -> io::Result<()> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated and st is writable storage for one struct stat.
    cvt(unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) }).map(drop)
}

/// `fstat(2)` of `fd`; the result is discarded.
///
/// # Errors
/// The errno of the call.
#[inline]
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is writable storage for one struct stat.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) }).map(drop)
}

/// `unlink(2)` of `path`.
///
/// # Errors
/// The errno of the call.
#[inline]
pub fn unlink(path: &CStr) -> io::Result<()> {
    // SAFETY: path is NUL-terminated.
    cvt(unsafe { libc::unlink(path.as_ptr()) }).map(drop)
}

/// A set of descriptors for `select(2)`, built once and copied per call as lmbench does.
pub struct FdSet {
    set: libc::fd_set,
    nfds: RawFd,
}

impl FdSet {
    /// An empty set.
    pub fn new() -> Self {
        let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
        // SAFETY: FD_ZERO initializes the whole fd_set it is given.
        unsafe { libc::FD_ZERO(set.as_mut_ptr()) };
        FdSet {
            // SAFETY: FD_ZERO above initialized it.
            set: unsafe { set.assume_init() },
            nfds: 0,
        }
    }

    /// Adds `fd`.
    ///
    /// # Errors
    /// `EINVAL` if `fd` is not below `FD_SETSIZE` (1024), select's hard limit.
    pub fn insert(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        if !(0..libc::FD_SETSIZE as RawFd).contains(&raw) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: raw is within 0..FD_SETSIZE, the bound FD_SET indexes into.
        unsafe { libc::FD_SET(raw, &mut self.set) };
        self.nfds = self.nfds.max(raw + 1);
        Ok(())
    }

    /// `select(2)` for readability on a copy of the set with a zero timeout (a poll of every
    /// descriptor, never a sleep); returns how many are ready.
    ///
    /// # Errors
    /// The errno of the call.
    #[inline]
    pub fn select_read_now(&self) -> io::Result<usize> {
        let mut copy = self.set;
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: copy and tv are live locals; the null sets are allowed by select.
        let n = cvt(unsafe {
            libc::select(
                self.nfds,
                &mut copy,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut tv,
            )
        })?;
        Ok(n as usize)
    }
}

impl Default for FdSet {
    fn default() -> Self {
        Self::new()
    }
}

/// `fork(2)`: `Some(child pid)` in the parent, `None` in the child.
///
/// # Safety
/// The calling process must be single-threaded (or the child must call only
/// async-signal-safe functions): the child gets a copy of memory in which another thread may
/// have held a lock. Benchmarks' children only read, write, exec and `_exit`.
///
/// # Errors
/// `EAGAIN`/`ENOMEM` from the kernel.
pub unsafe fn fork() -> io::Result<Option<Pid>> {
    // SAFETY: forwarded to the caller by this function's contract.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 { None } else { Some(pid) })
}

/// `_exit(2)`: leaves a forked child without running the parent's atexit handlers or
/// flushing its copy of stdout.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `waitpid(2)` for `pid`, retrying on `EINTR`; returns the raw wait status.
///
/// # Errors
/// `ECHILD` if `pid` is not our child.
pub fn wait(pid: Pid) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: status is a writable int.
        match cvt(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(status),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether a wait status says the child exited with status 0.
pub fn exited_ok(status: libc::c_int) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// `kill(2)`.
///
/// # Errors
/// `ESRCH` if no such process.
pub fn kill(pid: Pid, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `getpid(2)`.
pub fn getpid() -> Pid {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// `execv(3)` of `path` with the NULL-terminated `argv`; on failure the child `_exit`s 127
/// (the shell's "command not found"), so the parent sees the failure in the wait status.
pub fn exec_or_exit(path: &CStr, argv: &[*const libc::c_char]) -> ! {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    // SAFETY: path is NUL-terminated and argv is a NULL-terminated array of pointers to
    // NUL-terminated strings that the caller keeps alive (they were built before fork).
    unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
    exit_child(127)
}

/// A signal handler taking only the signal number.
pub type Handler = extern "C" fn(libc::c_int);

/// A signal handler that also gets `siginfo_t` and the interrupted context (SA_SIGINFO).
pub type InfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

fn sigaction_raw(sig: libc::c_int, handler: usize, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    // SAFETY: an all-zero sigaction is a valid value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: sa is fully initialized and handler is SIG_DFL or an extern "C" fn of the
    // signature `flags` announces; `old` is writable. The old action is copied out, as
    // lmbench's `do_install` asks for it.
    cvt(unsafe { libc::sigaction(sig, &sa, &mut old) }).map(drop)
}

/// `sigaction(2)` installing `handler` for `sig` with no flags, as lmbench's `lat_sig`.
///
/// # Errors
/// `EINVAL` for an uncatchable signal.
#[inline]
pub fn install_handler(sig: libc::c_int, handler: Handler) -> io::Result<()> {
    sigaction_raw(sig, handler as usize, 0)
}

/// `sigaction(2)` installing an SA_SIGINFO `handler` for `sig`.
///
/// # Errors
/// `EINVAL` for an uncatchable signal.
pub fn install_info_handler(sig: libc::c_int, handler: InfoHandler) -> io::Result<()> {
    sigaction_raw(sig, handler as usize, libc::SA_SIGINFO | libc::SA_RESTART)
}

/// Restores the default action of `sig`.
///
/// # Errors
/// `EINVAL` for an uncatchable signal.
pub fn default_handler(sig: libc::c_int) -> io::Result<()> {
    sigaction_raw(sig, libc::SIG_DFL, 0)
}

/// A memory mapping, unmapped on drop (or explicitly, to time `munmap`).
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// `mmap(2)` of `len` bytes of `fd` from offset 0, shared, with protection `prot`.
    ///
    /// # Errors
    /// The errno of the call (`ENODEV`, `ENOMEM`, `EINVAL` for `len == 0`).
    #[inline]
    pub fn file(fd: BorrowedFd<'_>, len: usize, prot: libc::c_int) -> io::Result<Mapping> {
        Self::file_with(fd, len, prot, libc::MAP_SHARED)
    }

    /// `mmap(2)` of `len` bytes of `fd` from offset 0, private (copy-on-write), read-write:
    /// every first store to a page takes its own fault.
    ///
    /// # Errors
    /// The errno of the call.
    #[inline]
    pub fn file_private(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Self::file_with(
            fd,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        )
    }

    fn file_with(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
    ) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at a kernel-chosen address aliases no Rust object.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
        Self::from_raw(p, len)
    }

    /// An anonymous private mapping of `len` bytes with protection `prot`.
    ///
    /// # Errors
    /// The errno of the call.
    pub fn anonymous(len: usize, prot: libc::c_int) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at a kernel-chosen address aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        Self::from_raw(p, len)
    }

    fn from_raw(p: *mut libc::c_void, len: usize) -> io::Result<Mapping> {
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, since mmap rejects length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the byte at `offset` through a volatile load, so the access (and the page fault
    /// it may take) is not optimized away.
    ///
    /// # Panics
    /// If `offset >= len`.
    #[inline]
    pub fn touch(&self, offset: usize) -> u8 {
        assert!(offset < self.len);
        // SAFETY: offset is in bounds of a live, readable mapping.
        unsafe { self.ptr.as_ptr().add(offset).read_volatile() }
    }

    /// Stores `value` at `offset` through a volatile store (taking a fault on a page not yet
    /// written).
    ///
    /// # Panics
    /// If `offset >= len`.
    ///
    /// # Safety
    /// The mapping must be writable.
    #[inline]
    pub unsafe fn poke(&self, offset: usize, value: u8) {
        assert!(offset < self.len);
        // SAFETY: offset is in bounds of a live mapping the caller guarantees is writable.
        unsafe { self.ptr.as_ptr().add(offset).write_volatile(value) }
    }

    /// `munmap(2)` now, reporting its error.
    ///
    /// # Errors
    /// The errno of the call.
    #[inline]
    pub fn unmap(self) -> io::Result<()> {
        let (p, len) = (self.ptr.as_ptr(), self.len);
        std::mem::forget(self);
        // SAFETY: p/len describe a mapping we own and that nothing references any more.
        cvt(unsafe { libc::munmap(p.cast(), len) }).map(drop)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is owned by self and no reference into it outlives self.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// `mprotect(2)` of the page-aligned range `addr..addr + len`; async-signal-safe.
///
/// # Errors
/// `EINVAL` for an unaligned `addr`, `ENOMEM` for an unmapped range.
pub fn protect(addr: usize, len: usize, prot: libc::c_int) -> io::Result<()> {
    // SAFETY: changing protection aliases nothing; callers pass a range they mapped.
    cvt(unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) }).map(drop)
}

/// The CPUs the calling thread may run on (`sched_getaffinity(2)`).
///
/// # Errors
/// The errno of the call.
pub fn affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is writable and its size is passed.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) })?;
    Ok(set)
}

/// Restricts the calling thread to `set` (`sched_setaffinity(2)`).
///
/// # Errors
/// `EINVAL` if `set` holds no online CPU.
pub fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: set is a valid cpu_set_t and its size is passed.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) }).map(drop)
}

/// A set holding only the lowest-numbered CPU of `allowed`.
pub fn first_cpu_of(allowed: &libc::cpu_set_t) -> Option<libc::cpu_set_t> {
    cpus_of(allowed).next().map(only)
}

/// A set holding only the second-lowest CPU of `allowed` (the lowest when it allows one).
pub fn second_cpu_of(allowed: &libc::cpu_set_t) -> Option<libc::cpu_set_t> {
    let mut cpus = cpus_of(allowed);
    let first = cpus.next()?;
    Some(only(cpus.next().unwrap_or(first)))
}

/// The CPUs in `set`, lowest first.
fn cpus_of(set: &libc::cpu_set_t) -> impl Iterator<Item = usize> + '_ {
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads within the set for cpu < max.
    (0..max).filter(move |&c| unsafe { libc::CPU_ISSET(c, set) })
}

/// The set of `cpu` alone.
fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu comes from `cpus_of`, so it is below the set's size.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    one
}

/// The calling thread held on the lowest-numbered CPU it may run on, until dropped, when its
/// former affinity comes back. Children forked meanwhile inherit the one CPU.
///
/// Why rows pin: under the icount clock every vCPU's instructions advance the time a
/// benchmark reads, and a wait with every vCPU idle jumps to the next timer. A child or peer
/// on the other CPU adds both (workloads/README.md, "What the icount clock measures").
pub struct OneCpu {
    saved: libc::cpu_set_t,
}

impl OneCpu {
    /// Pins the calling thread.
    ///
    /// # Errors
    /// `sched_getaffinity`/`sched_setaffinity` failures, or an empty affinity mask.
    pub fn pin() -> io::Result<OneCpu> {
        let saved = affinity()?;
        let one = first_cpu_of(&saved)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty affinity mask"))?;
        set_affinity(&one)?;
        Ok(OneCpu { saved })
    }
}

impl Drop for OneCpu {
    fn drop(&mut self) {
        let _ = set_affinity(&self.saved);
    }
}

/// Sets `SO_LINGER` to abort on close: the connection ends with RST and leaves no
/// TIME_WAIT socket, so tens of thousands of connects do not exhaust ephemeral ports.
///
/// # Errors
/// The errno of `setsockopt`.
pub fn set_linger_abort(fd: BorrowedFd<'_>) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: l is a live struct linger and its size is passed.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `listen(2)` again on a listening socket, to raise its accept backlog.
///
/// # Errors
/// The errno of the call.
pub fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: listen takes plain integers.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// Minor page faults the process has taken so far (`getrusage(2)`'s `ru_minflt`).
///
/// # Errors
/// The errno of the call.
pub fn minor_faults() -> io::Result<u64> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: ru is writable storage for one struct rusage.
    cvt(unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) })?;
    // SAFETY: getrusage succeeded and filled it.
    Ok(unsafe { ru.assume_init() }.ru_minflt as u64)
}

/// The effective user id (`geteuid(2)`).
pub fn geteuid() -> libc::uid_t {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Page size in bytes (`sysconf(_SC_PAGESIZE)`), 4096 if unknown.
pub fn page_size() -> usize {
    // SAFETY: sysconf takes a plain integer.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Runs this program again with address-space randomization off (`personality(2)`
/// `ADDR_NO_RANDOMIZE`, what `setarch -R` does), unless it already is; children it starts
/// inherit it. Returns only when randomization is already off.
///
/// Measurements then see the same layout in every run: `lat_mmap` costs 31 or 37 µs per
/// operation natively depending on where the randomized mmap base puts its mapping, and a
/// run drew one or the other at random (workloads/README.md).
///
/// # Errors
/// `personality` or `execve` failures.
pub fn reexec_without_aslr() -> io::Result<()> {
    let persona = persona()?;
    if persona & libc::ADDR_NO_RANDOMIZE != 0 {
        return Ok(());
    }
    // SAFETY: sets flags of this process's persona; takes effect at the next execve.
    if unsafe { libc::personality((persona | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong) } == -1 {
        return Err(io::Error::last_os_error());
    }
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    Err(std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .exec())
}

/// Whether this process runs with address-space randomization off.
///
/// # Errors
/// `personality` failures.
pub fn aslr_off() -> io::Result<bool> {
    Ok(persona()? & libc::ADDR_NO_RANDOMIZE != 0)
}

/// This process's `personality(2)` flags.
fn persona() -> io::Result<libc::c_int> {
    // SAFETY: 0xffffffff only queries the persona.
    let persona = unsafe { libc::personality(0xffff_ffff) };
    if persona == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(persona)
}
