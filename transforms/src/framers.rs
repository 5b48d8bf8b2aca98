//! Protocol-agnostic framers: `raw` and newline-delimited `lines`.

use crate::{FrameError, Framer, Framing};

/// Every chunk of spooled bytes is a message: the identity framing.
///
/// Useful to track a stream (mirroring, accounting) without knowing its protocol.
#[derive(Debug, Default, Clone)]
pub struct RawFramer;

impl Framer for RawFramer {
    fn frame(&mut self, spool: &[u8]) -> Result<Framing, FrameError> {
        if spool.is_empty() {
            Ok(Framing::Partial)
        } else {
            Ok(Framing::Complete { len: spool.len() })
        }
    }

    fn name(&self) -> &'static str {
        "raw"
    }
}

/// Newline-terminated messages (the `\n` is part of the message), at most `max` bytes.
#[derive(Debug, Clone)]
pub struct LinesFramer {
    max: usize,
    /// How far the spool has already been searched, so a long partial line is not
    /// rescanned from the start on every call.
    scanned: usize,
}

impl LinesFramer {
    /// A lines framer refusing lines longer than `max` bytes (including the newline).
    pub fn new(max: usize) -> LinesFramer {
        LinesFramer { max, scanned: 0 }
    }
}

impl Framer for LinesFramer {
    fn frame(&mut self, spool: &[u8]) -> Result<Framing, FrameError> {
        let start = self.scanned.min(spool.len());
        match spool[start..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let len = start + i + 1;
                self.scanned = 0;
                if len > self.max {
                    return Err(FrameError::TooLong {
                        max: self.max,
                        seen: len,
                    });
                }
                Ok(Framing::Complete { len })
            }
            None => {
                self.scanned = spool.len();
                if spool.len() >= self.max {
                    return Err(FrameError::TooLong {
                        max: self.max,
                        seen: spool.len(),
                    });
                }
                Ok(Framing::Partial)
            }
        }
    }

    fn name(&self) -> &'static str {
        "lines"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` to a lines framer in chunks and returns the messages it reports.
    fn frame_in_chunks(input: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut framer = LinesFramer::new(1 << 20);
        let mut spool = Vec::new();
        let mut messages = Vec::new();
        let mut pos = 0;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        bounds.push(input.len());
        bounds.sort_unstable();
        for end in bounds {
            spool.extend_from_slice(&input[pos..end.max(pos)]);
            pos = end.max(pos);
            while let Framing::Complete { len } = framer.frame(&spool).unwrap() {
                messages.push(spool.drain(..len).collect());
            }
        }
        (messages, spool)
    }

    #[test]
    fn lines_split_on_newline_and_keep_rest() {
        let (messages, rest) = frame_in_chunks(b"ab\ncd\nef", &[]);
        assert_eq!(messages, vec![b"ab\n".to_vec(), b"cd\n".to_vec()]);
        assert_eq!(rest, b"ef");
    }

    #[test]
    fn lines_too_long_is_an_error() {
        let mut framer = LinesFramer::new(4);
        assert_eq!(
            framer.frame(b"abcd"),
            Err(FrameError::TooLong { max: 4, seen: 4 })
        );
        let mut framer = LinesFramer::new(4);
        assert_eq!(
            framer.frame(b"abcde\n"),
            Err(FrameError::TooLong { max: 4, seen: 6 })
        );
        let mut framer = LinesFramer::new(4);
        assert_eq!(framer.frame(b"abc\n"), Ok(Framing::Complete { len: 4 }));
    }

    #[test]
    fn raw_frames_everything() {
        assert_eq!(RawFramer.frame(b""), Ok(Framing::Partial));
        assert_eq!(RawFramer.frame(b"xyz"), Ok(Framing::Complete { len: 3 }));
    }

    proptest! {
        #[test]
        fn lines_independent_of_split(input in proptest::collection::vec(
            prop_oneof![Just(b'\n'), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let whole = frame_in_chunks(&input, &[]);
            let split = frame_in_chunks(&input, &cuts);
            prop_assert_eq!(whole, split);
        }
    }
}
