//! TCP relaying for the userspace proxy: splice(2) through a pipe, both
//! directions pipelined, pipes reused across connections.
//!
//! Each direction moves bytes socket → pipe → socket inside the kernel. The
//! pump keeps reading while the pipe has room and writing while it holds
//! data, so a slow writer does not stall the reader (the sender's window
//! stays open). Pipes are costly to create (two syscalls, and enlarging one
//! more); an emptied pipe goes back to a small pool, which matters for
//! short connections (the connection-rate benchmark).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{SpliceFFlags, splice};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Pipe capacity asked for (the kernel's default cap, fs.pipe-max-size, is 1 MiB).
const PIPE_SIZE: usize = 1 << 20;
/// Most bytes one splice call moves.
const CHUNK: usize = 1 << 20;
/// Idle pipes kept for reuse.
const POOL_MAX: usize = 512;
/// Buffer of the copying fallback (no splice).
const COPY_BUF: usize = 256 * 1024;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

#[derive(Debug)]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes the pipe can hold (what F_SETPIPE_SZ granted).
    cap: usize,
}

impl Pipe {
    fn take() -> io::Result<Pipe> {
        if let Some(p) = POOL.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(p);
        }
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
        // Failure keeps the default size (64 KiB): slower, not wrong.
        let cap = nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32))
            .map(|n| n as usize)
            .unwrap_or(64 * 1024);
        Ok(Pipe { r, w, cap })
    }

    /// Returns an empty pipe to the pool (a pipe with bytes left is dropped).
    fn give_back(self, empty: bool) {
        if !empty {
            return;
        }
        if let Ok(mut v) = POOL.lock()
            && v.len() < POOL_MAX
        {
            v.push(self);
        }
    }
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// Relays between `a` and `b` until both directions reached EOF (each
/// direction half-closes its writer when its reader ends).
pub async fn relay(mut a: TcpStream, mut b: TcpStream) {
    match (Pipe::take(), Pipe::take()) {
        (Ok(p1), Ok(p2)) => {
            let first_done = AtomicBool::new(false);
            let _ = tokio::join!(
                one_way(&a, &b, p1, &first_done),
                one_way(&b, &a, p2, &first_done)
            );
        }
        _ => {
            let _ =
                tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUF, COPY_BUF).await;
            let _ = a.shutdown().await;
            let _ = b.shutdown().await;
        }
    }
}

/// Moves `from` → `to` until EOF, then half-closes `to` if it is the first
/// direction to finish. The second one does not need to: both sockets are
/// closed right after, with nothing left unread, which sends the same FIN
/// (one syscall less per connection).
async fn one_way(
    from: &TcpStream,
    to: &TcpStream,
    pipe: Pipe,
    first_done: &AtomicBool,
) -> io::Result<()> {
    let mut held = 0usize;
    let res = pump(from, to, &pipe, &mut held).await;
    if !first_done.swap(true, Ordering::Relaxed) {
        let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    }
    pipe.give_back(res.is_ok() && held == 0);
    res
}

/// What one non-blocking splice call did.
enum Step {
    Moved(usize),
    Eof,
    /// The socket has nothing (its readiness is cleared) or no room.
    Blocked,
    /// The pipe has no free slot although the socket has bytes: splicing
    /// in fails with EAGAIN too, but waiting for readability would hang
    /// (the socket is readable already; no new edge comes).
    PipeFull,
}

fn step(r: io::Result<usize>) -> io::Result<Step> {
    match r {
        Ok(0) => Ok(Step::Eof),
        Ok(n) => Ok(Step::Moved(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Step::Blocked),
        Err(e) if e.kind() == io::ErrorKind::StorageFull => Ok(Step::PipeFull),
        Err(e) => Err(e),
    }
}

/// Whether `s` has bytes (or a pending EOF) to read, without consuming any.
fn has_input(s: &TcpStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    let mut b = [0u8; 1];
    recv(
        s.as_raw_fd(),
        &mut b,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .is_ok()
}

async fn pump(from: &TcpStream, to: &TcpStream, pipe: &Pipe, held: &mut usize) -> io::Result<()> {
    let mut eof = false;
    loop {
        let (mut read_blocked, mut write_blocked, mut pipe_full) = (false, false, false);
        if !eof && *held < pipe.cap {
            let room = (pipe.cap - *held).min(CHUNK);
            match step(from.try_io(Interest::READABLE, || {
                match splice(from.as_fd(), None, pipe.w.as_fd(), None, room, flags()) {
                    // EAGAIN from a full pipe must not clear the socket's readiness.
                    Err(nix::errno::Errno::EAGAIN) if *held > 0 && has_input(from) => {
                        Err(io::Error::from(io::ErrorKind::StorageFull))
                    }
                    r => r.map_err(io::Error::from),
                }
            }))? {
                Step::Moved(n) => *held += n,
                Step::Eof => eof = true,
                Step::Blocked => read_blocked = true,
                Step::PipeFull => pipe_full = true,
            }
        }
        if *held > 0 {
            match step(to.try_io(Interest::WRITABLE, || {
                splice(pipe.r.as_fd(), None, to.as_fd(), None, *held, flags())
                    .map_err(io::Error::from)
            }))? {
                Step::Moved(m) => *held -= m,
                Step::Eof => {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "peer closed"));
                }
                // Splicing out of a pipe never reports a full pipe.
                Step::Blocked | Step::PipeFull => write_blocked = true,
            }
        }
        if eof && *held == 0 {
            return Ok(());
        }
        // Wait only when nothing can progress: reading is blocked (or
        // impossible: pipe full / EOF) and writing is blocked (or idle).
        let can_read = !eof && *held < pipe.cap && !pipe_full;
        let read_waits = !can_read || read_blocked;
        let write_waits = *held == 0 || write_blocked;
        if !(read_waits && write_waits) {
            continue;
        }
        match (can_read, *held > 0) {
            (true, true) => {
                tokio::select! {
                    r = from.readable() => r?,
                    w = to.writable() => w?,
                }
            }
            (true, false) => from.readable().await?,
            (false, true) => to.writable().await?,
            (false, false) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// client ⇄ relay ⇄ echo-less sink/source over loopback: bytes arrive
    /// intact in both directions, EOF propagates, pipes go back to the pool.
    #[tokio::test]
    async fn relays_both_ways_and_propagates_eof() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (ua, fa) = (
            upstream.local_addr().expect("addr"),
            front.local_addr().expect("addr"),
        );
        let proxy = tokio::spawn(async move {
            let (c, _) = front.accept().await.expect("accept");
            let u = TcpStream::connect(ua).await.expect("connect");
            relay(c, u).await;
        });
        // Upstream: reads everything, then answers with its own 3 MiB and the length it saw.
        let server = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.expect("accept");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            let reply: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
            s.write_all(&reply).await.expect("write");
            s.shutdown().await.expect("shutdown");
            got
        });
        let mut c = TcpStream::connect(fa).await.expect("connect");
        let sent: Vec<u8> = (0..5 << 20).map(|i| (i % 253) as u8).collect();
        c.write_all(&sent).await.expect("write");
        c.shutdown().await.expect("shutdown");
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.expect("read");
        let got = server.await.expect("server");
        proxy.await.expect("proxy");
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "upstream saw different bytes");
        assert_eq!(back.len(), 3 << 20);
        assert!(back.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        assert!(!POOL.lock().expect("pool").is_empty(), "pipes returned");
    }
}
