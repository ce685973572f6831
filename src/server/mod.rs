//! axum front door: TwiML webhook, Media Streams WebSocket, health and metrics.
