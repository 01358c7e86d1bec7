//! [`Frames`]: a response body that hands out prepared frames, one per poll.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

/// A body that yields the given pieces as data frames, in order, each ready at once
/// (cloning a `Bytes` is a reference count, so a frame costs no copy).
///
/// With [`yielding`](Frames::yielding) it returns `Pending` once before every frame but
/// the first (waking itself at once), so a hyper server writes and flushes each frame on
/// its own, as an upstream streaming token by token does.
#[derive(Clone, Debug)]
pub struct Frames {
    pieces: Arc<[Bytes]>,
    next: usize,
    yielding: bool,
    yielded: bool,
}

impl Frames {
    /// A body of `pieces`, every frame ready at once.
    pub fn new(pieces: Arc<[Bytes]>) -> Self {
        Self {
            pieces,
            next: 0,
            yielding: false,
            yielded: false,
        }
    }

    /// A body of `pieces` that lets its writer flush between frames.
    pub fn yielding(pieces: Arc<[Bytes]>) -> Self {
        Self {
            yielding: true,
            ..Self::new(pieces)
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(piece) = this.pieces.get(this.next) else {
            return Poll::Ready(None);
        };
        if this.yielding && this.next > 0 && !this.yielded {
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.yielded = false;
        this.next += 1;
        Poll::Ready(Some(Ok(Frame::data(piece.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.next == self.pieces.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn yields_every_piece_in_order() {
        let pieces: Arc<[Bytes]> = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")].into();
        for body in [Frames::new(pieces.clone()), Frames::yielding(pieces)] {
            let all = futures::executor::block_on(body.collect())
                .unwrap()
                .to_bytes();
            assert_eq!(&all[..], b"abc");
        }
    }
}
