//! Batched UDP I/O (recvmmsg/sendmmsg): one system call moves up to a batch of datagrams.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;
/// Largest UDP payload, so no query is ever cut short.
pub(crate) const SLOT: usize = 65535;

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Receives what is queued (without waiting) into `bufs`; `got` gets (slot, length, peer).
pub(crate) fn recv(
    fd: RawFd,
    bufs: &mut [Vec<u8>],
    got: &mut Vec<(usize, usize, SocketAddr)>,
) -> std::io::Result<()> {
    // The headers hold raw pointers (not Send), so they live only for this call.
    let mut hdrs = MultiHeaders::<SockaddrStorage>::preallocate(bufs.len(), None);
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
        bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
    let res = recvmmsg(fd, &mut hdrs, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
    for (slot, m) in res.enumerate() {
        if let Some(peer) = m.address.as_ref().and_then(to_std) {
            got.push((slot, m.bytes, peer));
        }
    }
    Ok(())
}

/// Sends as many of `msgs` as the socket takes now; returns how many went out.
pub(crate) fn send(fd: RawFd, msgs: &[(&[u8], SocketAddr)]) -> std::io::Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    let mut hdrs = MultiHeaders::<SockaddrStorage>::preallocate(msgs.len(), None);
    let iovs: Vec<[IoSlice<'_>; 1]> = msgs.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = msgs
        .iter()
        .map(|(_, a)| Some(SockaddrStorage::from(*a)))
        .collect();
    let none: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(
        fd,
        &mut hdrs,
        iovs.iter(),
        &addrs,
        none,
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(sent.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batches_round_trip_on_loopback() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..5u8 {
            client.send_to(&[i; 3], to).unwrap();
        }
        // Loopback delivery is synchronous, so everything is queued already.
        let mut bufs: Vec<Vec<u8>> = (0..4).map(|_| vec![0u8; SLOT]).collect();
        let mut got = Vec::new();
        recv(server.as_raw_fd(), &mut bufs, &mut got).unwrap();
        let from = client.local_addr().unwrap();
        let want: Vec<(usize, usize, SocketAddr)> = (0..4).map(|i| (i, 3, from)).collect();
        assert_eq!(got, want);
        assert_eq!(&bufs[2][..3], &[2, 2, 2]);
        let replies: Vec<(&[u8], SocketAddr)> = vec![(b"ab", from), (b"cde", from)];
        assert_eq!(send(server.as_raw_fd(), &replies).unwrap(), 2);
        let mut b = [0u8; 16];
        let (n, _) = client.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], b"ab");
        let (n, _) = client.recv_from(&mut b).unwrap();
        assert_eq!(&b[..n], b"cde");
        // Nothing queued: would block rather than wait.
        got.clear();
        recv(server.as_raw_fd(), &mut bufs[..1], &mut got).unwrap();
        assert_eq!(got.len(), 1);
        let err = recv(server.as_raw_fd(), &mut bufs, &mut got).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }
}
