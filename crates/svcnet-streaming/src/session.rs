//! A SPDY/3.1 server session over any byte stream: accepts peer streams, echoes PINGs, moves DATA.
//!
//! Flow control: kubectl's SPDY library (spdystream) neither sends nor honours
//! WINDOW_UPDATE, so we never hold back our own DATA for a window; we still
//! grant window for every byte handed to a consumer, which keeps a peer that
//! does count windows going. Backpressure comes from TCP: each stream has a
//! small bounded queue and the reader waits while it is full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::spdy::{self, Decoder, Encoder, Frame, Headers};

/// Largest DATA frame we send.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Queued DATA frames per stream before the reader waits.
const STREAM_QUEUE: usize = 16;

/// Session failures.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the SPDY session is closed")]
    Closed,
    #[error("the peer reset the stream")]
    Reset,
}

#[derive(Debug)]
struct StreamState {
    data: Option<mpsc::Sender<Bytes>>,
    reset: watch::Sender<bool>,
    local_fin: bool,
}

type StreamMap = Arc<Mutex<HashMap<u32, StreamState>>>;

/// Sends frames of one stream.
#[derive(Debug, Clone)]
pub struct StreamWriter {
    id: u32,
    tx: mpsc::Sender<Frame>,
    streams: StreamMap,
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data`, split into frames of at most [`MAX_DATA_CHUNK`].
    pub async fn send(&self, data: Bytes) -> Result<(), SessionError> {
        let mut data = data;
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA_CHUNK));
            self.tx
                .send(Frame::Data {
                    stream_id: self.id,
                    fin: false,
                    data: chunk,
                })
                .await
                .map_err(|_| SessionError::Closed)?;
        }
        Ok(())
    }

    /// Half-closes our direction (DATA with FIN).
    pub async fn finish(&self) -> Result<(), SessionError> {
        // Queue the FIN before forgetting the stream, so nothing waiting on the
        // stream's end can cancel it.
        let sent = self
            .tx
            .send(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await;
        // Forget the stream once both directions are closed.
        if let Ok(mut m) = self.streams.lock()
            && let Some(s) = m.get_mut(&self.id)
        {
            s.local_fin = true;
            if s.data.is_none() {
                m.remove(&self.id);
            }
        }
        sent.map_err(|_| SessionError::Closed)
    }

    /// Ends the stream in both directions.
    pub async fn reset(&self, status: u32) -> Result<(), SessionError> {
        let sent = self
            .tx
            .send(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await;
        if let Ok(mut m) = self.streams.lock() {
            m.remove(&self.id);
        }
        sent.map_err(|_| SessionError::Closed)
    }
}

/// A stream the peer opened (already answered with SYN_REPLY).
#[derive(Debug)]
pub struct IncomingStream {
    pub headers: Headers,
    /// The peer's DATA; None after its FIN (or a reset or the end of the session).
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
    /// Turns true when the peer reset the stream or the session ended; use [`peer_reset`].
    pub reset: watch::Receiver<bool>,
}

impl IncomingStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        spdy::header(&self.headers, name)
    }
}

/// Resolves only when the peer reset the stream or the session ended; a
/// stream that closed normally (its state forgotten) never resolves it.
pub async fn peer_reset(mut reset: watch::Receiver<bool>) {
    if reset.wait_for(|r| *r).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Handle to a running session.
#[derive(Debug, Clone)]
pub struct Session {
    tx: mpsc::Sender<Frame>,
    closing: watch::Sender<bool>,
}

impl Session {
    /// Starts reader and writer tasks on `io`; returns the session and the peer's new streams.
    pub fn start<T>(io: T) -> (Session, mpsc::Receiver<IncomingStream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (tx, rx) = mpsc::channel::<Frame>(64);
        let (accept_tx, accept_rx) = mpsc::channel(64);
        let (closing, closing_rx) = watch::channel(false);
        let streams: StreamMap = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(write_loop(wr, rx, closing_rx.clone()));
        tokio::spawn(read_loop(rd, tx.clone(), accept_tx, streams, closing_rx));
        (Session { tx, closing }, accept_rx)
    }

    /// Sends GOAWAY, flushes what is queued and half-closes the connection;
    /// the reader keeps draining until the peer closes (at most a few seconds),
    /// so that unread input never turns our close into a reset that loses output.
    pub async fn close(&self) {
        let _ = self
            .tx
            .send(Frame::GoAway {
                last_good_stream_id: 0,
                status: 0,
            })
            .await;
        let _ = self.closing.send(true);
    }
}

async fn write_loop<W: AsyncWrite + Send + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Frame>,
    mut closing: watch::Receiver<bool>,
) {
    let mut enc = Encoder::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let first = tokio::select! {
            biased;
            f = rx.recv() => f,
            _ = until_true(&mut closing) => {
                // Take everything queued before the close, then stop.
                let mut rest = Vec::new();
                while let Ok(f) = rx.try_recv() { rest.push(f); }
                for f in rest {
                    if enc.encode(&f, &mut buf).is_err() { break; }
                }
                let _ = wr.write_all(&buf).await;
                let _ = wr.shutdown().await;
                return;
            }
        };
        let Some(first) = first else {
            let _ = wr.shutdown().await;
            return;
        };
        buf.clear();
        if let Err(e) = enc.encode(&first, &mut buf) {
            tracing::warn!(error = %e, "encoding SPDY frame");
            return;
        }
        // Coalesce what is ready into one write.
        while buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(f) => {
                    if let Err(e) = enc.encode(&f, &mut buf) {
                        tracing::warn!(error = %e, "encoding SPDY frame");
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
}

async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

fn reset_all(streams: &StreamMap) {
    if let Ok(mut m) = streams.lock() {
        for (_, s) in m.drain() {
            let _ = s.reset.send(true);
        }
    }
}

async fn read_loop<R: AsyncRead + Send + Unpin>(
    mut rd: R,
    tx: mpsc::Sender<Frame>,
    accept: mpsc::Sender<IncomingStream>,
    streams: StreamMap,
    closing: watch::Receiver<bool>,
) {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut last_id = 0u32;
    let mut accept = Some(accept);
    loop {
        let frame = match dec.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                if buf.capacity() - buf.len() < 16 * 1024 {
                    buf.reserve(64 * 1024);
                }
                let read = async { rd.read_buf(&mut buf).await };
                let n = if *closing.borrow() {
                    // Closing: drain until the peer closes, but not forever.
                    match tokio::time::timeout(Duration::from_secs(5), read).await {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                } else {
                    read.await
                };
                match n {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "SPDY protocol error, closing the session");
                let _ = tx
                    .send(Frame::GoAway {
                        last_good_stream_id: last_id,
                        status: 1,
                    })
                    .await;
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                // Client streams are odd and increasing.
                if stream_id % 2 == 0 || stream_id <= last_id {
                    let _ = tx
                        .send(Frame::RstStream {
                            stream_id,
                            status: spdy::status::PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                last_id = stream_id;
                let Some(acc) = accept.as_ref() else {
                    let _ = tx
                        .send(Frame::RstStream {
                            stream_id,
                            status: spdy::status::REFUSED_STREAM,
                        })
                        .await;
                    continue;
                };
                let (dtx, drx) = mpsc::channel(STREAM_QUEUE);
                let (rtx, rrx) = watch::channel(false);
                let fin = flags & spdy::FLAG_FIN != 0;
                if let Ok(mut m) = streams.lock() {
                    m.insert(
                        stream_id,
                        StreamState {
                            data: (!fin).then_some(dtx),
                            reset: rtx,
                            local_fin: false,
                        },
                    );
                }
                if tx
                    .send(Frame::SynReply {
                        stream_id,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                let incoming = IncomingStream {
                    headers,
                    data: drx,
                    writer: StreamWriter {
                        id: stream_id,
                        tx: tx.clone(),
                        streams: streams.clone(),
                    },
                    reset: rrx,
                };
                if acc.send(incoming).await.is_err() {
                    accept = None;
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let sender = streams
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&stream_id).and_then(|s| s.data.clone()));
                let len = data.len() as u32;
                if let Some(s) = sender {
                    if !data.is_empty() && s.send(data).await.is_ok() {
                        let _ = tx
                            .send(Frame::WindowUpdate {
                                stream_id,
                                delta: len,
                            })
                            .await;
                        let _ = tx
                            .send(Frame::WindowUpdate {
                                stream_id: 0,
                                delta: len,
                            })
                            .await;
                    }
                } else if len > 0 {
                    // Keep the session window open even for data we drop.
                    let _ = tx
                        .send(Frame::WindowUpdate {
                            stream_id: 0,
                            delta: len,
                        })
                        .await;
                }
                if fin
                    && let Ok(mut m) = streams.lock()
                    && let Some(s) = m.get_mut(&stream_id)
                {
                    s.data = None;
                    if s.local_fin {
                        m.remove(&stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Ok(mut m) = streams.lock()
                    && let Some(s) = m.remove(&stream_id)
                {
                    let _ = s.reset.send(true);
                }
            }
            Frame::Ping { id } => {
                // Echo the peer's pings (odd ids come from the client).
                if id % 2 == 1 && tx.send(Frame::Ping { id }).await.is_err() {
                    break;
                }
            }
            Frame::GoAway { .. } => accept = None,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }
    reset_all(&streams);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a session from the client side of an in-memory pipe.
    struct Client {
        io: tokio::io::DuplexStream,
        enc: Encoder,
        dec: Decoder,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, f: Frame) {
            let mut out = Vec::new();
            self.enc.encode(&f, &mut out).unwrap();
            self.io.write_all(&out).await.unwrap();
        }

        /// The next frame that is not a WINDOW_UPDATE.
        async fn next(&mut self) -> Option<Frame> {
            loop {
                match self.dec.decode(&mut self.buf).unwrap() {
                    Some(Frame::WindowUpdate { .. }) => continue,
                    Some(f) => return Some(f),
                    None => {
                        if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                            return None;
                        }
                    }
                }
            }
        }
    }

    fn syn(id: u32, kind: &str) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_id: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: vec![("streamtype".into(), kind.into())],
        }
    }

    #[tokio::test]
    async fn replies_echoes_pings_moves_data_and_resets() {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (session, mut accept) = Session::start(ours);
        let mut c = Client {
            io: theirs,
            enc: Encoder::new(),
            dec: Decoder::new(),
            buf: BytesMut::new(),
        };
        c.send(syn(1, "data")).await;
        assert_eq!(
            c.next().await,
            Some(Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![]
            })
        );
        let mut s = accept.recv().await.unwrap();
        assert_eq!(s.header("streamType"), Some("data"));
        c.send(Frame::Ping { id: 1 }).await;
        assert_eq!(c.next().await, Some(Frame::Ping { id: 1 }));
        // Our own (even) ping ids are answers, never echoed back.
        c.send(Frame::Ping { id: 2 }).await;
        c.send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::from_static(b"abc"),
        })
        .await;
        assert_eq!(s.data.recv().await, Some(Bytes::from_static(b"abc")));
        assert_eq!(s.data.recv().await, None, "FIN ends the peer's data");
        let big = Bytes::from(vec![7u8; 100_000]);
        s.writer.send(big.clone()).await.unwrap();
        s.writer.finish().await.unwrap();
        let mut got = Vec::new();
        loop {
            match c.next().await {
                Some(Frame::Data {
                    stream_id: 1,
                    fin,
                    data,
                }) => {
                    assert!(data.len() <= MAX_DATA_CHUNK);
                    got.extend_from_slice(&data);
                    if fin {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, big);
        // Even and reused stream ids are refused.
        c.send(syn(2, "data")).await;
        assert_eq!(
            c.next().await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: spdy::status::PROTOCOL_ERROR
            })
        );
        c.send(syn(1, "data")).await;
        assert_eq!(
            c.next().await,
            Some(Frame::RstStream {
                stream_id: 1,
                status: spdy::status::PROTOCOL_ERROR
            })
        );
        // A reset reaches the stream's owner.
        c.send(syn(3, "error")).await;
        assert!(matches!(
            c.next().await,
            Some(Frame::SynReply { stream_id: 3, .. })
        ));
        let s3 = accept.recv().await.unwrap();
        c.send(Frame::RstStream {
            stream_id: 3,
            status: spdy::status::CANCEL,
        })
        .await;
        tokio::time::timeout(Duration::from_secs(5), peer_reset(s3.reset))
            .await
            .expect("reset seen");
        session.close().await;
        assert_eq!(
            c.next().await,
            Some(Frame::GoAway {
                last_good_stream_id: 0,
                status: 0
            })
        );
        assert_eq!(c.next().await, None, "the session half-closed after GOAWAY");
    }
}
