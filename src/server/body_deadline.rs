//! The request-body deadline: tower-http's `TimeoutBody` times the gap between frames; this
//! wrapper remembers that it fired, so that the answer can say 408 whatever the handler's
//! extractor made of the error.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tower_http::timeout::{TimeoutBody, TimeoutError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Set once the body of a request went quiet for longer than the deadline.
#[derive(Clone, Default)]
pub struct TimedOut(Arc<AtomicBool>);

impl TimedOut {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct DeadlineBody {
    // Boxed because `TimeoutBody` holds a `Sleep`, which is not `Unpin`.
    inner: Pin<Box<TimeoutBody<Incoming>>>,
    size_hint: SizeHint,
    timed_out: TimedOut,
}

impl DeadlineBody {
    pub fn new(body: Incoming, gap: Duration) -> (Self, TimedOut) {
        let timed_out = TimedOut::default();
        // `TimeoutBody` does not pass the size on; the body-limit layer uses it to refuse an
        // announced oversized body before reading it.
        let size_hint = body.size_hint();
        let body = Self {
            inner: Box::pin(TimeoutBody::new(gap, body)),
            size_hint,
            timed_out: timed_out.clone(),
        };
        (body, timed_out)
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            if e.is::<TimeoutError>() {
                self.timed_out.0.store(true, Ordering::Relaxed);
            }
        }
        polled
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}
