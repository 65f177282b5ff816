//! TCP relaying for the userspace proxy: small messages copied through a
//! buffer, bulk data spliced (splice(2) through a pipe), both directions
//! pipelined, pipes reused across connections.
//!
//! Each direction starts by copying (recv and send, cheaper for the few
//! small messages most connections carry) and switches to splice at the
//! first read that fills its buffer. Spliced, each direction moves bytes
//! socket → pipe → socket inside the kernel. The pump keeps reading while
//! the pipe has room and writing while it holds data, so a slow writer does
//! not stall the reader (the sender's window stays open). Pipes are costly
//! to create (two syscalls, and enlarging one more) and fresh buffers cost
//! an allocation, zeroing and page faults; emptied ones go back to small
//! pools, which matters for short connections (the connection-rate
//! benchmark).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{SpliceFFlags, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipe capacity asked for (the kernel's default cap, fs.pipe-max-size, is 1 MiB).
const PIPE_SIZE: usize = 1 << 20;
/// Most bytes one splice call moves.
const CHUNK: usize = 1 << 20;
/// Buffer of the copying fallback (no pipe to splice through).
const COPY_BUF: usize = 256 * 1024;
/// Buffer of the copying start of each direction; a read that fills it switches to splice.
const SMALL: usize = 16 * 1024;

/// Idle pipes (512 at most).
static POOL: Pool<Pipe> = Pool::new(512);
/// Idle [`SMALL`] copy buffers (256 at most, 4 MiB).
static BUFS: Pool<Box<[u8]>> = Pool::new(256);

/// Idle things kept for reuse, up to a number.
struct Pool<T> {
    idle: Mutex<Vec<T>>,
    max: usize,
}

impl<T> Pool<T> {
    const fn new(max: usize) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            max,
        }
    }

    fn take(&self) -> Option<T> {
        self.idle.lock().ok().and_then(|mut v| v.pop())
    }

    fn put(&self, t: T) {
        if let Ok(mut v) = self.idle.lock()
            && v.len() < self.max
        {
            v.push(t);
        }
    }
}

#[derive(Debug)]
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes the pipe can hold (what F_SETPIPE_SZ granted).
    cap: usize,
}

impl Pipe {
    fn take() -> io::Result<Pipe> {
        if let Some(p) = POOL.take() {
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
        if empty {
            POOL.put(self);
        }
    }
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// Relays between `a` and `b` until both directions reached EOF (the
/// first direction to end half-closes its writer; see [`one_way`]).
pub async fn relay(a: TcpStream, b: TcpStream) {
    let first_done = AtomicBool::new(false);
    let _ = tokio::join!(one_way(&a, &b, &first_done), one_way(&b, &a, &first_done));
}

/// Moves `from` → `to` until EOF, then half-closes `to` if it is the first
/// direction to finish. The second one usually need not: both sockets are
/// closed right after, which sends the same FIN (one syscall less per
/// connection). It must when its last bytes went out with MSG_MORE: only
/// a shutdown sends corked bytes before the close, and a close with unread
/// input (a client still uploading to an upstream that answered and left)
/// resets the connection and drops them.
async fn one_way(from: &TcpStream, to: &TcpStream, first_done: &AtomicBool) -> io::Result<()> {
    let res = forward(from, to).await;
    let corked = matches!(res, Ok(true));
    if !first_done.swap(true, Ordering::Relaxed) || corked {
        let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    }
    res.map(|_| ())
}

/// Copies while each read returns less than [`SMALL`] bytes, then splices.
///
/// Most connections carry a few small messages (a request, a response):
/// for those, recv and send on a small buffer cost less kernel time than
/// splicing in and out of a pipe (perf, connection-rate benchmark: splice
/// was 29 % of the proxy's CPU, HAProxy's recv and send 21 % of its
/// smaller total). A read that fills the buffer means bulk data, which
/// splice moves without copying it through user space. True when the last
/// bytes were sent corked (MSG_MORE), waiting for the FIN.
async fn forward(from: &TcpStream, to: &TcpStream) -> io::Result<bool> {
    let mut buf = BUFS
        .take()
        .unwrap_or_else(|| vec![0u8; SMALL].into_boxed_slice());
    let start = copy_small(from, to, &mut buf).await;
    BUFS.put(buf);
    match start? {
        CopyEnd::Eof => return Ok(false),
        CopyEnd::Last => return Ok(true),
        CopyEnd::Bulk => {}
    }
    match Pipe::take() {
        Ok(pipe) => {
            let mut held = 0usize;
            let res = pump(from, to, &pipe, &mut held).await;
            pipe.give_back(res.is_ok() && held == 0);
            res.map(|()| false)
        }
        // No pipe: keep copying, with a larger buffer (a full one is just more data).
        Err(_) => {
            let mut buf = vec![0u8; COPY_BUF];
            loop {
                match copy_small(from, to, &mut buf).await? {
                    CopyEnd::Eof => return Ok(false),
                    CopyEnd::Last => return Ok(true),
                    CopyEnd::Bulk => {}
                }
            }
        }
    }
}

/// How the copying start of a direction ended.
enum CopyEnd {
    /// EOF read.
    Eof,
    /// EOF known to follow the bytes just sent with MSG_MORE.
    Last,
    /// A read filled the buffer: bulk data follows.
    Bulk,
}

/// Copies through `buf` until EOF or a read that fills it.
async fn copy_small(from: &TcpStream, to: &TcpStream, buf: &mut [u8]) -> io::Result<CopyEnd> {
    loop {
        let (n, last) = read(from, buf).await?;
        if n == 0 {
            return Ok(CopyEnd::Eof);
        }
        write_all(to, &buf[..n], last).await?;
        if last {
            return Ok(CopyEnd::Last);
        }
        if n == buf.len() {
            return Ok(CopyEnd::Bulk);
        }
    }
}

/// One read of what `s` has, waiting until it has something: the bytes
/// read (0 at EOF) and whether they are the last (EOF follows).
///
/// A read shorter than `buf` took everything queued, so it also clears the
/// readiness, as an EAGAIN would (tokio clears it only if no new event came
/// in the meantime, and every new arrival raises a new edge): the recv that
/// would only say EAGAIN is saved. If the peer's FIN had arrived before such
/// a read (EPOLLRDHUP), EOF comes next: the recv that would return 0 is
/// saved too, and the caller can send the FIN with the last bytes.
///
/// Not covered: TCP urgent data. recv stops short at the urgent mark, so
/// the bytes after it wait for the peer's next segment (or, after a FIN,
/// are not relayed); splicing never passed them either.
async fn read(s: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    use nix::sys::socket::{MsgFlags, recv};
    let len = buf.len();
    loop {
        let ready = s.ready(Interest::READABLE).await?;
        // A short read leaves its count here and reports WouldBlock to tokio.
        let mut short = None;
        let r = s.try_io(Interest::READABLE, || {
            let n = recv(s.as_raw_fd(), buf, MsgFlags::empty()).map_err(io::Error::from)?;
            if n > 0 && n < len {
                short = Some(n);
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            Ok(n)
        });
        match (r, short) {
            (Ok(n), _) => return Ok((n, false)),
            (Err(_), Some(n)) => return Ok((n, ready.is_read_closed())),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => continue,
            (Err(e), None) => return Err(e),
        }
    }
}

/// Writes all of `buf`. With `last`, the bytes are sent with MSG_MORE: the
/// FIN that follows (shutdown or close) then leaves in the same segment,
/// and the peer acknowledges both at once (two packets fewer).
async fn write_all(s: &TcpStream, mut buf: &[u8], last: bool) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    let flags = if last {
        // nix names no MSG_MORE.
        MsgFlags::MSG_NOSIGNAL | MsgFlags::from_bits_retain(nix::libc::MSG_MORE)
    } else {
        MsgFlags::MSG_NOSIGNAL
    };
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_io(Interest::WRITABLE, || {
            send(s.as_raw_fd(), buf, flags).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "peer closed")),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    /// The upstream's listener, the proxy's address, and the proxy task: it
    /// accepts one client, connects to the upstream, waits for `gate` (if
    /// any) and relays.
    async fn proxied(
        gate: Option<oneshot::Receiver<()>>,
    ) -> (TcpListener, std::net::SocketAddr, JoinHandle<()>) {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (ua, fa) = (
            upstream.local_addr().expect("addr"),
            front.local_addr().expect("addr"),
        );
        let proxy = tokio::spawn(async move {
            let (c, _) = front.accept().await.expect("accept");
            let u = TcpStream::connect(ua).await.expect("connect");
            if let Some(gate) = gate {
                gate.await.expect("gate");
            }
            relay(c, u).await;
        });
        (upstream, fa, proxy)
    }

    /// client ⇄ relay ⇄ echo-less sink/source over loopback: bytes arrive
    /// intact in both directions, EOF propagates, pipes go back to the pool.
    #[tokio::test]
    async fn relays_both_ways_and_propagates_eof() {
        let (upstream, fa, proxy) = proxied(None).await;
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
        assert!(
            !POOL.idle.lock().expect("pool").is_empty(),
            "pipes returned"
        );
    }

    /// Request/response traffic through an echoing upstream: small messages
    /// (copied), then one of exactly the copy buffer's size (the switch to
    /// splice), then small ones again (spliced), each answered intact and in
    /// order; the client's EOF reaches the upstream and the upstream's back.
    #[tokio::test]
    async fn small_messages_then_a_full_buffer_switch_to_splice_midway() {
        let (upstream, fa, proxy) = proxied(None).await;
        let echo = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.expect("accept");
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            loop {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                total += n;
                s.write_all(&buf[..n]).await.expect("write");
            }
            s.shutdown().await.expect("shutdown");
            total
        });
        let mut c = TcpStream::connect(fa).await.expect("connect");
        let sizes: Vec<usize> = [1, 100, 5000, SMALL, 3, 200, 70_000, 10]
            .into_iter()
            .chain(std::iter::repeat_n(50, 20))
            .collect();
        let mut sent = 0;
        for (i, len) in sizes.iter().enumerate() {
            let msg: Vec<u8> = (0..*len).map(|j| ((i * 7 + j) % 256) as u8).collect();
            c.write_all(&msg).await.expect("write");
            let mut back = vec![0u8; *len];
            c.read_exact(&mut back).await.expect("echo");
            assert!(back == msg, "message {i} ({len} bytes) came back changed");
            sent += len;
        }
        c.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.expect("eof");
        assert!(rest.is_empty());
        assert_eq!(echo.await.expect("echo"), sent);
        proxy.await.expect("proxy");
    }

    /// A reply whose FIN is already queued when the relay first reads (the
    /// read sees EPOLLRDHUP: the bytes go out with MSG_MORE, then the FIN):
    /// the client gets the bytes and then EOF, and can still send on its
    /// half, which the upstream (half-closed, still reading) receives.
    #[tokio::test]
    async fn a_reply_with_its_fin_behind_it_arrives_whole_and_half_close_holds() {
        let (replied_tx, replied_rx) = tokio::sync::oneshot::channel();
        let (upstream, fa, proxy) = proxied(Some(replied_rx)).await;
        let server = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.expect("accept");
            s.write_all(b"hello from upstream").await.expect("write");
            s.shutdown().await.expect("shutdown");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            replied_tx.send(()).expect("signal");
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.expect("read");
            got
        });
        let mut c = TcpStream::connect(fa).await.expect("connect");
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"hello from upstream");
        c.write_all(b"ping after EOF").await.expect("write");
        c.shutdown().await.expect("shutdown");
        assert_eq!(server.await.expect("server"), b"ping after EOF");
        proxy.await.expect("proxy");
    }

    /// A client still uploading when the upstream answers and resets (it
    /// closes with the upload unread): the answer reaches the client before
    /// the proxy's close resets the client side too.
    #[tokio::test]
    async fn an_answer_before_the_upstream_resets_reaches_an_uploading_client() {
        let (upstream, fa, proxy) = proxied(None).await;
        let server = tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.expect("accept");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            s.write_all(b"413 too large").await.expect("write");
            // Dropped with the upload unread: the kernel resets the connection.
        });
        let c = TcpStream::connect(fa).await.expect("connect");
        let (mut rd, mut wr) = c.into_split();
        let uploader = tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..2000 {
                if wr.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"413 too large");
        server.await.expect("server");
        let _ = uploader.await;
        proxy.await.expect("proxy");
    }
}
