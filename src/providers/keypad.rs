//! The recogniser used when no speech recogniser is configured (`[call] stt = "keypad"`, or
//! `"auto"` without Whisper models): it recognises nothing, and says so at once. Every utterance
//! ends with an empty final, so the engine answers with its fallback reply straight away instead
//! of waiting for `stt_timeout_ms`; keypad input (DTMF) works as usual. Chosen over a simulated
//! recogniser so a real caller is never answered as if words had been understood.

use tokio::sync::mpsc;

use super::{BoxFuture, CallContext, SpeechToText, SttAudioFormat, SttError, SttEvent, SttInput};

/// Recognises no speech; calls understand keypad input only.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeypadOnlyStt;

impl SpeechToText for KeypadOnlyStt {
    fn name(&self) -> &'static str {
        "keypad-only"
    }

    fn audio_format(&self) -> SttAudioFormat {
        SttAudioFormat::Mulaw8k
    }

    fn stream(
        &self,
        _call: CallContext,
        mut input: mpsc::Receiver<SttInput>,
        events: mpsc::Sender<SttEvent>,
    ) -> BoxFuture<'static, Result<(), SttError>> {
        Box::pin(async move {
            while let Some(item) = input.recv().await {
                if matches!(item, SttInput::UtteranceEnd)
                    && events
                        .send(SttEvent::Final {
                            text: String::new(),
                        })
                        .await
                        .is_err()
                {
                    break;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_utterance_ends_with_an_empty_final_and_nothing_else() {
        let (in_tx, in_rx) = mpsc::channel(8);
        let (ev_tx, mut ev_rx) = mpsc::channel(8);
        let task = tokio::spawn(KeypadOnlyStt.stream(CallContext::default(), in_rx, ev_tx));
        in_tx.send(SttInput::Mulaw([0xff; 160])).await.unwrap();
        in_tx.send(SttInput::UtteranceDiscarded).await.unwrap();
        in_tx.send(SttInput::Mulaw([0x7f; 160])).await.unwrap();
        in_tx.send(SttInput::UtteranceEnd).await.unwrap();
        drop(in_tx);
        task.await.unwrap().unwrap();
        assert_eq!(
            ev_rx.recv().await,
            Some(SttEvent::Final {
                text: String::new()
            })
        );
        assert_eq!(ev_rx.recv().await, None, "one final per utterance end");
    }
}
