//! The socket side of a call: read errors classified by kind (`SocketError`), the writer task
//! that batches queued messages into one flush (and timestamps a flushed `clear` for the
//! barge-in measurement), and the bounded wait for it at the end of the call.

use super::*;

/// A WebSocket read error, classified by kind rather than by its text.
pub trait SocketError: Display {
    /// The peer sent a message or frame over the configured size limit.
    fn is_oversized(&self) -> bool;
}

impl SocketError for axum::Error {
    fn is_oversized(&self) -> bool {
        use tokio_tungstenite::tungstenite::Error as WsError;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = source {
            if let Some(WsError::Capacity(_)) = error.downcast_ref::<WsError>() {
                return true;
            }
            source = error.source();
        }
        false
    }
}

impl SocketError for std::convert::Infallible {
    fn is_oversized(&self) -> bool {
        match *self {}
    }
}

/// Gives the writer `limit` to flush and close the socket. If the peer is not reading, the writer
/// is aborted so the socket is dropped: a detached writer would hold the connection open for ever.
pub(super) async fn stop_writer(writer: JoinHandle<()>, limit: Duration) {
    let abort = writer.abort_handle();
    if tokio::time::timeout(limit, writer).await.is_err() {
        abort.abort();
    }
}

pub(super) fn is_clear(msg: &Message) -> bool {
    matches!(msg, Message::Text(t) if t.as_bytes().starts_with(twilio::CLEAR_PREFIX))
}

pub(super) async fn write_loop<K>(
    mut sink: futures_util::stream::SplitSink<K, Message>,
    mut rx: mpsc::Receiver<Message>,
    clear_timing: Arc<ClearTiming>,
) where
    K: Sink<Message> + Send,
    <K as Sink<Message>>::Error: Display,
{
    while let Some(msg) = rx.recv().await {
        let mut clear = is_clear(&msg);
        if sink.feed(msg).await.is_err() {
            return;
        }
        // Batch whatever else is ready into one flush.
        while let Ok(msg) = rx.try_recv() {
            clear |= is_clear(&msg);
            if sink.feed(msg).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
        if clear {
            clear_timing.sent(std::time::Instant::now());
        }
    }
    let _ = sink.close().await;
}
