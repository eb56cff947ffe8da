//! Network namespaces: create with `ip netns add`, enter from a thread with `setns`, delete by
//! unmounting and unlinking `/run/netns/NAME` (what `ip netns delete` does), sweep the ones left
//! behind by dead processes.

use super::{EmuError, TUN_MTU};
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Where `ip netns` keeps its named namespaces (bind mounts).
const NETNS_DIR: &str = "/run/netns";
/// Prefix of every namespace this tool creates: `rl-<pid>-<n>-srv|cli`.
const PREFIX: &str = "rl-";
/// The TUN device's name inside each namespace (names are per namespace, so all emulators can
/// use the same one).
pub(super) const TUN_NAME: &str = "rl0";

/// A named namespace and an fd of it (which keeps it alive and lets threads enter it even after
/// its name was deleted).
pub(super) struct Netns {
    pub name: String,
    fd: OwnedFd,
}

/// The `ip` binary: from PATH, else the usual sbin directories (PATH of a non-login root shell
/// may lack them).
fn ip_binary() -> Option<&'static Path> {
    static IP: OnceLock<Option<PathBuf>> = OnceLock::new();
    IP.get_or_init(|| {
        let from_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        from_path
            .into_iter()
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join("ip"))
            .find(|p| p.is_file())
    })
    .as_deref()
}

/// Root, `/dev/net/tun` and `ip`, or a message saying which is missing.
pub(super) fn check_supported() -> Result<(), EmuError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(EmuError::NotRoot);
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err(EmuError::Unsupported(
            "/dev/net/tun is missing (no TUN support; in a container, pass --device /dev/net/tun)"
                .into(),
        ));
    }
    if ip_binary().is_none() {
        return Err(EmuError::Unsupported(
            "the `ip` command is missing (install iproute2: apt-get install iproute2)".into(),
        ));
    }
    Ok(())
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<(), EmuError> {
    let bin =
        ip_binary().ok_or_else(|| EmuError::Unsupported("the `ip` command is missing".into()))?;
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| EmuError::Setup(format!("cannot run `ip {}`: {e}", args.join(" "))))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EmuError::Setup(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `rl-<pid>-<n>`, unique within this process (and, by pid, among live processes).
pub(super) fn unique_base_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{PREFIX}{}-{n}", std::process::id())
}

/// Deletes a named namespace: lazy unmount of its bind mount, then unlink (as `ip netns
/// delete`). The namespace itself lives on while something still holds it (a socket, the TUN
/// fd, our fd) and disappears with the last reference; its name is gone at once. Missing names
/// are fine. Returns whether a name was removed.
pub(super) fn delete(name: &str) -> bool {
    if name.is_empty() || name.contains('/') {
        return false;
    }
    let path = format!("{NETNS_DIR}/{name}");
    let Ok(c_path) = CString::new(path.clone()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    std::fs::remove_file(&path).is_ok()
}

/// Removes `rl-<pid>-…` namespaces whose process no longer exists (left by a `kill -9`, an
/// abort, a power cut). Live processes' namespaces are never touched.
pub(super) fn sweep_stale() -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return removed;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && delete(&name) {
            removed.push(name);
        }
    }
    removed
}

impl Netns {
    /// `ip netns add NAME` and an fd of it.
    pub fn add(name: &str) -> Result<Netns, EmuError> {
        ip(&["netns", "add", name])?;
        let path = format!("{NETNS_DIR}/{name}");
        let file = std::fs::File::open(&path)
            .map_err(|e| EmuError::Setup(format!("cannot open {path}: {e}")))?;
        Ok(Netns {
            name: name.to_string(),
            fd: file.into(),
        })
    }

    /// Runs `f` on a new thread that has entered this namespace; panics in `f` are resumed here.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let fd = self.fd.as_raw_fd();
        let name = &self.name;
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name(format!("netns {name}"))
                .spawn_scoped(s, move || {
                    // SAFETY: `fd` is an open namespace fd borrowed from `self` for the scope;
                    // setns only changes this (new, short-lived) thread's namespace.
                    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                        panic!(
                            "cannot enter network namespace {name}: {}",
                            std::io::Error::last_os_error()
                        );
                    }
                    f()
                })
                .expect("cannot spawn a thread to enter a network namespace");
            match handle.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<(), EmuError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip netns exec NAME program`.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(ip_binary().unwrap_or(Path::new("ip")));
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), EmuError> {
        let path = sysctl_path(key)?;
        self.run_in(|| std::fs::write(&path, value)).map_err(|e| {
            EmuError::Setup(format!("cannot set {key} = {value} in {}: {e}", self.name))
        })
    }

    pub fn sysctl(&self, key: &str) -> Result<String, EmuError> {
        let path = sysctl_path(key)?;
        self.run_in(|| std::fs::read_to_string(&path))
            .map(|s| s.trim().to_string())
            .map_err(|e| EmuError::Setup(format!("cannot read {key} in {}: {e}", self.name)))
    }

    /// Sysctls, the TUN device, loopback and addresses of one side. Returns the TUN fd.
    pub fn setup_side(&self, addrs: &[Ipv4Addr]) -> Result<OwnedFd, EmuError> {
        // Before the TUN exists, so it inherits "default": no IPv6 (and no neighbour discovery
        // or router solicitations crossing the link). Kernels without IPv6 have no such keys.
        for key in [
            "net.ipv6.conf.default.disable_ipv6",
            "net.ipv6.conf.all.disable_ipv6",
        ] {
            let _ = self.set_sysctl(key, "1");
        }
        // Per namespace; 3 = client (send data in the SYN with a cookie) + server (accept it).
        self.set_sysctl("net.ipv4.tcp_fastopen", "3")?;
        let tun = self.run_in(|| super::tun::open(TUN_NAME)).map_err(|e| {
            EmuError::Setup(format!(
                "cannot create TUN {TUN_NAME} in {}: {e}",
                self.name
            ))
        })?;
        let mtu = TUN_MTU.to_string();
        ip(&["-n", &self.name, "link", "set", "lo", "up"])?;
        ip(&["-n", &self.name, "link", "set", TUN_NAME, "mtu", &mtu, "up"])?;
        for a in addrs {
            ip(&[
                "-n",
                &self.name,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                TUN_NAME,
            ])?;
        }
        Ok(tun)
    }
}

fn sysctl_path(key: &str) -> Result<PathBuf, EmuError> {
    let key = key.trim();
    // Dotted like sysctl(8), or already a path below /proc/sys.
    let rel = if key.contains('/') {
        key.to_string()
    } else {
        key.replace('.', "/")
    };
    if rel.is_empty() || rel.contains("..") || rel.starts_with('/') {
        return Err(EmuError::Setup(format!("not a sysctl name: {key:?}")));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// An fd from a raw one (for the TUN module).
pub(super) fn owned(fd: i32) -> OwnedFd {
    // SAFETY: callers pass a freshly opened fd they own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
