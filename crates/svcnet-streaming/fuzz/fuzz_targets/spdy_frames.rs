//! Fuzzes the SPDY/3.1 decoder: arbitrary bytes must never panic, and every decoded frame must re-encode and decode to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use svcnet_streaming::spdy::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::new();
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        frames.push(f);
    }
    let mut enc = Encoder::new();
    let mut wire = Vec::new();
    for f in &frames {
        if enc.encode(f, &mut wire).is_err() {
            return;
        }
    }
    let mut again = Decoder::new();
    let mut buf = BytesMut::from(&wire[..]);
    for f in &frames {
        assert_eq!(again.decode(&mut buf).ok().flatten().as_ref(), Some(f));
    }
});
