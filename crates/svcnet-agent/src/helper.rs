//! The hidden `builtin` subcommand: enter a pod's namespaces and exec a program, or run a built-in image.
//!
//! The agent never changes namespaces of its own threads for containers: it starts
//! `<svcnet> builtin run --netns ... -- argv`, which joins the pod's network namespace, makes a
//! private mount namespace with the pod's resolv.conf and hosts bind-mounted, sets the pod's
//! hostname in a new UTS namespace, and then execs the container's program. A container is
//! therefore a plain process whose pid the agent signals.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};

/// Errors of the helper; printed to stderr (the container log) before exiting.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error(
        "usage: builtin run [--netns PATH] [--resolv FILE] [--hosts FILE] [--hostname NAME] [--workdir DIR] [--tty] -- PROGRAM [ARGS...]: {0}"
    )]
    Usage(String),
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Exit code for "the program could not be executed" (as shells use).
pub const EXIT_EXEC_FAILED: i32 = 127;

/// Parsed `builtin run` arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    pub netns: Option<PathBuf>,
    pub resolv: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub hostname: Option<String>,
    pub workdir: Option<PathBuf>,
    pub tty: bool,
    pub argv: Vec<String>,
}

impl RunArgs {
    /// The arguments after `builtin run`, as the agent writes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec!["run".to_string()];
        let mut opt = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push(k.to_string());
                out.push(v);
            }
        };
        let disp = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        opt("--netns", disp(&self.netns));
        opt("--resolv", disp(&self.resolv));
        opt("--hosts", disp(&self.hosts));
        opt("--hostname", self.hostname.clone());
        opt("--workdir", disp(&self.workdir));
        if self.tty {
            out.push("--tty".into());
        }
        out.push("--".into());
        out.extend(self.argv.iter().cloned());
        out
    }

    pub fn parse(args: &[String]) -> Result<RunArgs, HelperError> {
        let mut r = RunArgs::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| HelperError::Usage(format!("{a} needs a value")))
            };
            match a.as_str() {
                "--netns" => r.netns = Some(val()?.into()),
                "--resolv" => r.resolv = Some(val()?.into()),
                "--hosts" => r.hosts = Some(val()?.into()),
                "--hostname" => r.hostname = Some(val()?),
                "--workdir" => r.workdir = Some(val()?.into()),
                "--tty" => r.tty = true,
                "--" => {
                    r.argv = it.cloned().collect();
                    break;
                }
                other => return Err(HelperError::Usage(format!("unknown flag {other:?}"))),
            }
        }
        if r.argv.is_empty() {
            return Err(HelperError::Usage("no program given".into()));
        }
        Ok(r)
    }
}

fn sys(context: impl Into<String>) -> impl FnOnce(nix::Error) -> HelperError {
    let context = context.into();
    move |source| HelperError::Sys { context, source }
}

/// Joins the namespaces and execs; returns only on failure.
pub fn run(a: &RunArgs) -> HelperError {
    match enter(a) {
        Ok(()) => {}
        Err(e) => return e,
    }
    let argv: Vec<CString> = match a
        .argv
        .iter()
        .map(|s| CString::new(s.as_bytes()))
        .collect::<Result<_, _>>()
    {
        Ok(v) => v,
        Err(_) => return HelperError::Usage("an argument contains a NUL byte".into()),
    };
    let Some(prog) = argv.first() else {
        return HelperError::Usage("no program given".into());
    };
    match nix::unistd::execvp(prog, &argv) {
        Err(source) => HelperError::Sys {
            context: format!("exec: {:?}", a.argv[0]),
            source,
        },
        Ok(never) => match never {},
    }
}

fn enter(a: &RunArgs) -> Result<(), HelperError> {
    // This thread gets its own fs attributes so joining or creating a mount namespace is allowed
    // in a process that already has other threads.
    unshare(CloneFlags::CLONE_FS).map_err(sys("unshare(CLONE_FS)"))?;
    if let Some(ns) = &a.netns {
        let f = std::fs::File::open(ns).map_err(|source| HelperError::Io {
            context: format!("open network namespace {}", ns.display()),
            source,
        })?;
        setns(f.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(sys(format!("join network namespace {}", ns.display())))?;
    }
    if a.resolv.is_some() || a.hosts.is_some() {
        unshare(CloneFlags::CLONE_NEWNS).map_err(sys("unshare(CLONE_NEWNS)"))?;
        // Keep the pod's bind mounts from propagating back to the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
        .map_err(sys("make / a slave mount"))?;
        for (src, dst) in [(&a.resolv, "/etc/resolv.conf"), (&a.hosts, "/etc/hosts")] {
            if let Some(src) = src {
                mount(
                    Some(src.as_path()),
                    dst,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys(format!("bind-mount {} on {dst}", src.display())))?;
            }
        }
    }
    if let Some(h) = &a.hostname {
        unshare(CloneFlags::CLONE_NEWUTS).map_err(sys("unshare(CLONE_NEWUTS)"))?;
        nix::unistd::sethostname(h).map_err(sys(format!("sethostname {h}")))?;
    }
    if a.tty {
        // A new session whose controlling terminal is the pty on stdin.
        nix::unistd::setsid().map_err(sys("setsid"))?;
        let tty = std::fs::read_link("/proc/self/fd/0").map_err(|source| HelperError::Io {
            context: "find the terminal".into(),
            source,
        })?;
        // Opening a terminal without O_NOCTTY in a session leader makes it the controlling one;
        // it stays so after this descriptor is closed.
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&tty)
            .map_err(|source| HelperError::Io {
                context: format!("open terminal {}", tty.display()),
                source,
            })?;
    }
    if let Some(wd) = &a.workdir {
        nix::unistd::chdir(wd.as_path()).map_err(sys(format!("chdir {}", wd.display())))?;
    }
    Ok(())
}

/// `builtin <args>`: `run ...` or a built-in image. Returns the process exit code.
pub async fn main(args: Vec<String>) -> i32 {
    match args.first().map(String::as_str) {
        Some("run") => {
            let e = match RunArgs::parse(&args[1..]) {
                Ok(a) => run(&a),
                Err(e) => e,
            };
            eprintln!("svcnet: {e}");
            EXIT_EXEC_FAILED
        }
        _ => match crate::builtins::run(args).await {
            Ok(()) => 0,
            Err(crate::builtins::BuiltinError::Exit(c)) => c,
            Err(e) => {
                eprintln!("{e}");
                1
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn run_args_round_trip() {
        let a = RunArgs {
            netns: Some("/run/netns/svcpod-1".into()),
            resolv: Some("/r/resolv.conf".into()),
            hosts: None,
            hostname: Some("web-0".into()),
            workdir: Some("/tmp".into()),
            tty: true,
            argv: s(&["sh", "-c", "echo --netns"]),
        };
        let args = a.to_args();
        assert_eq!(
            args,
            s(&[
                "run",
                "--netns",
                "/run/netns/svcpod-1",
                "--resolv",
                "/r/resolv.conf",
                "--hostname",
                "web-0",
                "--workdir",
                "/tmp",
                "--tty",
                "--",
                "sh",
                "-c",
                "echo --netns"
            ])
        );
        assert_eq!(RunArgs::parse(&args[1..]).expect("parse"), a);
    }

    #[test]
    fn run_args_errors() {
        for (args, want) in [
            (s(&["--netns"]), "--netns needs a value"),
            (s(&["--bogus", "--", "x"]), "unknown flag \"--bogus\""),
            (s(&["--"]), "no program given"),
        ] {
            let e = RunArgs::parse(&args).expect_err("error").to_string();
            assert!(e.ends_with(want), "{args:?}: {e}");
        }
    }
}
