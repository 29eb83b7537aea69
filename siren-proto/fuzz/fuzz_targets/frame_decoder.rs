//! Frame decoding: the stream is pushed into a `FrameDecoder` in pieces of fuzzer-chosen sizes and
//! drained after every push. The frames and the error (if any) must be exactly what a one-shot
//! reference parser over the whole stream gives, every frame must be non-empty and at most the
//! maximum, and `buffered()` must account for every byte not yet returned.
//!
//! Input layout: byte 0 picks the maximum frame size, bytes 1..=4 are a cycle of chunk sizes, the
//! rest is the byte stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use siren_proto::frame::{self, FrameDecoder, FrameError, HEADER_LEN};

/// Small maxima, so that the decoder's compaction (`pos > max`) is reached with short inputs.
const MAXES: [usize; 8] = [1, 2, 5, 16, 64, 255, 1024, 4096];

/// The whole stream at once: the frames, then the error or the number of unconsumed bytes.
fn reference(stream: &[u8], max: usize) -> (Vec<&[u8]>, Result<usize, FrameError>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        let Some(header) = rest.first_chunk::<HEADER_LEN>() else {
            return (frames, Ok(rest.len()));
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len == 0 {
            return (frames, Err(FrameError::Empty));
        }
        if len > max {
            return (frames, Err(FrameError::TooLarge { len, max }));
        }
        if rest.len() < HEADER_LEN + len {
            return (frames, Ok(rest.len()));
        }
        frames.push(&rest[HEADER_LEN..HEADER_LEN + len]);
        rest = &rest[HEADER_LEN + len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&max_sel, rest)) = data.split_first() else {
        return;
    };
    let max = MAXES[usize::from(max_sel) % MAXES.len()];
    let (sizes, stream) = rest.split_at(rest.len().min(4));
    let sizes: Vec<usize> = if sizes.is_empty() {
        vec![1]
    } else {
        // 0 means "everything that is left".
        sizes
            .iter()
            .map(|&b| if b == 0 { usize::MAX } else { usize::from(b) })
            .collect()
    };

    // parse_header agrees with the reference on the first header.
    if let Some(h) = stream.first_chunk::<HEADER_LEN>() {
        let len = u32::from_be_bytes(*h) as usize;
        match frame::parse_header(*h, max) {
            Ok(n) => assert!(n == len && n > 0 && n <= max),
            Err(FrameError::Empty) => assert_eq!(len, 0),
            Err(FrameError::TooLarge { len: l, max: m }) => {
                assert!(l == len && m == max && len > max)
            }
            Err(e) => panic!("unexpected frame error {e:?}"),
        }
    }

    let (want_frames, want_end) = reference(stream, max);

    let mut dec = FrameDecoder::new(max);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut got_err = None;
    let mut pushed = 0usize;
    let mut returned = 0usize;
    let mut left = stream;
    let mut i = 0;
    'outer: while !left.is_empty() {
        let n = sizes[i % sizes.len()].min(left.len());
        i += 1;
        dec.push(&left[..n]);
        left = &left[n..];
        pushed += n;
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(!f.is_empty(), "empty frame returned");
                    assert!(f.len() <= max, "frame of {} bytes > max {max}", f.len());
                    returned += HEADER_LEN + f.len();
                    got.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    got_err = Some(e);
                    break 'outer;
                }
            }
        }
        assert_eq!(dec.buffered(), pushed - returned, "buffered() is off");
    }

    assert_eq!(got.len(), want_frames.len(), "frame count differs");
    for (g, w) in got.iter().zip(&want_frames) {
        assert_eq!(&g[..], *w);
    }
    match (got_err, want_end) {
        (Some(g), Err(w)) => assert_eq!(g, w),
        (None, Ok(unconsumed)) => {
            assert_eq!(dec.buffered(), unconsumed);
            // Nothing more comes out without more input.
            assert_eq!(dec.next_frame(), Ok(None));
            // Re-encoding the frames reproduces the consumed part of the stream.
            let mut wire = Vec::new();
            for f in &got {
                frame::encode_into(&mut wire, f, max).expect("a decoded frame re-encodes");
            }
            assert_eq!(&wire[..], &stream[..stream.len() - unconsumed]);
        }
        (g, w) => panic!("decoder ended with {g:?}, reference with {w:?}"),
    }
});
