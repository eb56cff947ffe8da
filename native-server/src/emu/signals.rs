//! Ctrl-C and SIGTERM: delete every live emulator's namespaces, then let the signal do what it
//! would have done.
//!
//! The handler itself only writes the signal number to a pipe (async-signal-safe) and chains to
//! the handler that was installed before it (tokio's, for instance). A watcher thread reads the
//! pipe and shuts every registered emulator down (relay stopped, namespaces deleted). Then:
//! - if a thread is blocked in [`super::Emulator::wait`], or the program has its own handler
//!   (installed before ours, or after ours — it then replaced ours), the program decides what
//!   happens next: nothing more is done;
//! - otherwise the default action is restored and the signal raised again, so the process ends
//!   exactly as it would have without the emulator (killed by SIGINT/SIGTERM).

use super::relay::Shared;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

static INSTALL: Once = Once::new();
/// Write end of the self-pipe (-1 until installed).
static PIPE_W: AtomicI32 = AtomicI32::new(-1);
/// Live emulators.
static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
/// Threads blocked in `Emulator::wait`.
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// The disposition before ours, per signal: handler address (SIG_DFL = 0) and whether it takes
/// `siginfo`.
struct Previous {
    handler: AtomicUsize,
    siginfo: AtomicBool,
}

static PREV_INT: Previous = Previous {
    handler: AtomicUsize::new(0),
    siginfo: AtomicBool::new(false),
};
static PREV_TERM: Previous = Previous {
    handler: AtomicUsize::new(0),
    siginfo: AtomicBool::new(false),
};

fn previous(sig: libc::c_int) -> Option<&'static Previous> {
    match sig {
        libc::SIGINT => Some(&PREV_INT),
        libc::SIGTERM => Some(&PREV_TERM),
        _ => None,
    }
}

/// Marks a thread as waiting in `Emulator::wait` while alive.
pub(super) struct Waiting;

impl Waiting {
    pub fn new() -> Waiting {
        WAITERS.fetch_add(1, Ordering::SeqCst);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITERS.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn register(shared: &Arc<Shared>) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.retain(|w| w.strong_count() > 0);
    r.push(Arc::downgrade(shared));
}

pub(super) fn unregister(shared: &Shared) {
    let mut r = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    r.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), shared));
}

/// Installs the SIGINT/SIGTERM handlers and the watcher thread, once per process. A signal that
/// is ignored (SIG_IGN, e.g. a background job's SIGINT) stays ignored.
pub(super) fn install() {
    INSTALL.call_once(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for two fds.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return;
        }
        let read_fd = super::netns::owned(fds[0]);
        PIPE_W.store(fds[1], Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("rl-emu-signals".into())
            .spawn(move || watch(read_fd));
        if spawned.is_err() {
            return;
        }
        for sig in [libc::SIGINT, libc::SIGTERM] {
            install_one(sig);
        }
    });
}

fn install_one(sig: libc::c_int) {
    let prev = previous(sig).expect("SIGINT or SIGTERM");
    // SAFETY: sigaction with a zeroed (valid) struct to read the current disposition, then our
    // handler, whose signature matches SA_SIGINFO.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
            || old.sa_sigaction == libc::SIG_IGN
        {
            return;
        }
        prev.handler.store(old.sa_sigaction, Ordering::SeqCst);
        prev.siginfo
            .store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::SeqCst);
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler as *const () as usize;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaction(sig, &new, std::ptr::null_mut());
    }
}

/// The signal handler: async-signal-safe work only (a `write`, atomics, calling the previous
/// handler as the kernel would have).
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; saved and restored around our write.
    let errno = unsafe { *libc::__errno_location() };
    let fd = PIPE_W.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: one byte from a valid local.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
    if let Some(prev) = previous(sig) {
        let h = prev.handler.load(Ordering::SeqCst);
        if h != libc::SIG_DFL && h != libc::SIG_IGN {
            // SAFETY: `h` is the handler the program installed before us, with the signature
            // its flags say.
            unsafe {
                if prev.siginfo.load(Ordering::SeqCst) {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(h);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
                    f(sig);
                }
            }
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn watch(read_fd: std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    loop {
        let mut b = 0u8;
        // SAFETY: reads one byte into a valid local.
        let n = unsafe { libc::read(read_fd.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
        if n == 1 {
            on_signal(b as libc::c_int);
            continue;
        }
        let interrupted =
            n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
        if !interrupted {
            return;
        }
    }
}

fn on_signal(sig: libc::c_int) {
    let Some(prev) = previous(sig) else { return };
    // Decided before the shutdown: a waiter returns (and stops waiting) as soon as its
    // emulator stops.
    let program_handles_it = prev.handler.load(Ordering::SeqCst) != libc::SIG_DFL
        || WAITERS.load(Ordering::SeqCst) > 0
        || !our_handler_is_current(sig);
    let live: Vec<Arc<Shared>> = REGISTRY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let had_emulators = !live.is_empty();
    for shared in live {
        shared.shutdown(super::StopReason::Signal(sig));
    }
    if program_handles_it {
        return;
    }
    if had_emulators {
        eprintln!("rtmp-lab: link emulator namespaces removed");
    }
    // SAFETY: restoring the default disposition and re-raising: the process ends as it would
    // have without our handler.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn our_handler_is_current(sig: libc::c_int) -> bool {
    // SAFETY: reads the current disposition into a zeroed struct.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == handler as *const () as usize
    }
}
