//! Named network namespaces under /run/netns (as `ip netns` keeps them) and running code or processes inside them.
//!
//! Namespace switches happen on short-lived dedicated threads: `setns` only
//! moves the calling thread, so the rest of the process (and any async
//! runtime) stays in the host namespace.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where named network namespaces are bind-mounted (shared with iproute2).
pub const NETNS_DIR: &str = "/run/netns";

/// Errors of namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("{op}: permission denied: the svcnet lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")]
    NotPermitted { op: String },
    #[error("{op}: {source}")]
    Io {
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: Errno,
    },
    #[error("invalid network namespace name {0:?}")]
    InvalidName(String),
    #[error("network namespace {0:?} does not exist (is the lab up? try `svcnet up`)")]
    Missing(String),
    #[error("{0}: the worker thread panicked")]
    Panicked(String),
}

/// Result alias of this module.
pub type Result<T, E = NetnsError> = std::result::Result<T, E>;

fn sys(op: impl Into<String>) -> impl FnOnce(Errno) -> NetnsError {
    move |e| {
        let op = op.into();
        if e == Errno::EPERM || e == Errno::EACCES {
            NetnsError::NotPermitted { op }
        } else {
            NetnsError::Sys { op, source: e }
        }
    }
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> NetnsError {
    move |e| {
        let op = op.into();
        if e.kind() == io::ErrorKind::PermissionDenied {
            NetnsError::NotPermitted { op }
        } else {
            NetnsError::Io { op, source: e }
        }
    }
}

/// True when this process may build the lab (effective CAP_NET_ADMIN, bit 12).
pub fn has_net_admin() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// The bind-mount path of a named namespace.
pub fn path(name: &str) -> Result<PathBuf> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(NetnsError::InvalidName(name.into()));
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

/// True when `name` is a mounted network namespace.
pub fn exists(name: &str) -> bool {
    path(name).is_ok_and(|p| is_nsfs(&p))
}

fn is_nsfs(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Names of all namespaces under /run/netns (mounted or stale files).
pub fn list() -> Result<Vec<String>> {
    let rd = match fs::read_dir(NETNS_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("reading {NETNS_DIR}"))(e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Makes /run/netns a shared mount, as iproute2 does, so that namespaces
/// mounted later also appear in (and vanish from) mount namespaces that
/// copied it, e.g. a pod's.
fn ensure_netns_dir() -> Result<()> {
    fs::create_dir_all(NETNS_DIR).map_err(io_err(format!("creating {NETNS_DIR}")))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(format!("bind-mounting {NETNS_DIR}")))?;
            mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>)
                .map_err(sys(format!("sharing {NETNS_DIR}")))
        }
        Err(e) => Err(sys(format!("sharing {NETNS_DIR}"))(e)),
    }
}

/// Creates the named namespace; `Ok(false)` when it already exists.
pub fn create(name: &str) -> Result<bool> {
    let p = path(name)?;
    if is_nsfs(&p) {
        return Ok(false);
    }
    ensure_netns_dir()?;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(io_err(format!("creating {}", p.display())))?;
    let target = p.clone();
    let mounted = on_thread(name, move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(sys("creating a network namespace"))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("mounting {}", target.display())))
    })?;
    if let Err(e) = mounted {
        let _ = fs::remove_file(&p);
        return Err(e);
    }
    Ok(true)
}

/// Unmounts and removes the named namespace; `Ok(false)` when it was not there.
/// Links inside vanish with it once no process holds it any more.
pub fn delete(name: &str) -> Result<bool> {
    let p = path(name)?;
    if !p.exists() {
        return Ok(false);
    }
    match umount2(&p, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(sys(format!("unmounting {}", p.display()))(e)),
    }
    match fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(format!("removing {}", p.display()))(e)),
    }
}

fn on_thread<T: Send>(what: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|s| s.spawn(f).join()).map_err(|_| NetnsError::Panicked(what.into()))
}

/// Runs `f` on a fresh thread inside the named namespace (`None`: the
/// caller's namespace). Sockets opened there stay in that namespace, and
/// processes spawned there start in it.
pub fn run_in<T: Send>(name: Option<&str>, f: impl FnOnce() -> T + Send) -> Result<T> {
    let ns = match name {
        None => None,
        Some(n) => {
            let p = path(n)?;
            if !is_nsfs(&p) {
                return Err(NetnsError::Missing(n.into()));
            }
            Some(fs::File::open(&p).map_err(io_err(format!("opening {}", p.display())))?)
        }
    };
    let what = name.unwrap_or("host").to_string();
    let label = what.clone();
    on_thread(&label, move || -> Result<T> {
        if let Some(ns) = ns {
            setns(&ns, CloneFlags::CLONE_NEWNET)
                .map_err(sys(format!("entering network namespace {what}")))?;
        }
        Ok(f())
    })?
}

/// Starts `cmd` inside the named namespace.
pub fn spawn_in(name: &str, cmd: &mut Command) -> Result<Child> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    run_in(Some(name), || cmd.spawn())?.map_err(io_err(format!("starting {prog} in {name}")))
}

/// Replaces this process with `cmd` running inside the named namespace, in
/// a private mount namespace with its own /sys (as `ip netns exec` does), so
/// that tools reading /sys/class/net see the node's links. Returns only on failure.
pub fn exec_in(name: &str, cmd: &mut Command) -> NetnsError {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let r = run_in(Some(name), || {
        // Best effort: without a private /sys the shell still works.
        if unshare(CloneFlags::CLONE_NEWNS).is_ok()
            && mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .is_ok()
            && umount2("/sys", MntFlags::MNT_DETACH).is_ok()
        {
            let _ = mount(
                Some(name),
                "/sys",
                Some("sysfs"),
                MsFlags::empty(),
                None::<&str>,
            );
        }
        cmd.exec()
    });
    match r {
        Ok(e) => io_err(format!("running {prog} in {name}"))(e),
        Err(e) => e,
    }
}

/// Processes whose network namespace is the named one.
pub fn pids_in(name: &str) -> Result<Vec<i32>> {
    let p = path(name)?;
    let meta = fs::metadata(&p).map_err(io_err(format!("reading {}", p.display())))?;
    if !is_nsfs(&p) {
        return Ok(Vec::new());
    }
    let (dev, ino) = (meta.dev(), meta.ino());
    let me = std::process::id();
    let mut pids = Vec::new();
    let rd = fs::read_dir("/proc").map_err(io_err("reading /proc"))?;
    for entry in rd.filter_map(|e| e.ok()) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == me) {
            continue;
        }
        // Processes may exit while we look: skip what cannot be read.
        if let Ok(m) = fs::metadata(entry.path().join("ns/net"))
            && m.dev() == dev
            && m.ino() == ino
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Sends SIGTERM to every process in the named namespace, then SIGKILL to
/// those still there after `grace`. Returns how many processes there were.
pub fn kill_all_in(name: &str, grace: Duration) -> Result<usize> {
    let pids = pids_in(name)?;
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        let left = pids_in(name)?;
        if left.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for pid in &left {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(pids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("svcnet-lab-node0", Ok("/run/netns/svcnet-lab-node0")),
            ("", Err("invalid network namespace name \"\"")),
            ("..", Err("invalid network namespace name \"..\"")),
            ("a/b", Err("invalid network namespace name \"a/b\"")),
        ];
        for (name, want) in cases {
            let got = path(name)
                .map(|p| p.display().to_string())
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map(String::from).map_err(String::from));
        }
    }

    #[test]
    fn missing_namespace_is_reported() {
        let name = format!("svcnet-absent-{}", std::process::id());
        assert!(!exists(&name));
        let err = run_in(Some(&name), || ()).map_err(|e| e.to_string());
        assert_eq!(
            err,
            Err(format!(
                "network namespace \"{name}\" does not exist (is the lab up? try `svcnet up`)"
            ))
        );
    }
}
