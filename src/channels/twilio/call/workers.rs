//! The provider tasks of one call: the recogniser stream (opened after a delay when it is
//! reopened), the agent turn and the synthesiser worker, each forwarding what it produces to
//! the driver over a bounded channel. They hold no call state; when the driver goes away
//! (the channel closes) they stop.

use super::*;

pub(super) enum AgentMsg {
    Event(AgentEvent),
    Done(Result<(), AgentError>),
}

/// (turn, sentence queue, task) of the synthesiser working on the current reply.
pub(super) type TtsWorker = (u32, mpsc::Sender<(u32, String)>, JoinHandle<()>);

pub(super) struct TtsMsg {
    pub(super) turn: u32,
    pub(super) segment: u32,
    pub(super) audio: Option<Bytes>,
    pub(super) done: Option<Result<(), TtsError>>,
}

/// Opens a recogniser stream after `delay` (frames meanwhile queue, then drop counted).
pub(super) fn spawn_stt(
    deps: &CallDeps,
    ctx: &CallContext,
    delay: Duration,
) -> (
    mpsc::Sender<SttInput>,
    mpsc::Receiver<SttEvent>,
    JoinHandle<Result<(), SttError>>,
) {
    // ~1.3 s of audio may queue for a slow recogniser before frames are dropped and counted.
    let (in_tx, in_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(16);
    let stream = deps.stt.stream(ctx.clone(), in_rx, ev_tx);
    let task = tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        stream.await
    });
    (in_tx, ev_rx, task)
}

/// Runs a provider future while forwarding what it produces; `None` if the call went away.
async fn pump<T, U, R>(
    fut: BoxFuture<'static, R>,
    mut items: mpsc::Receiver<T>,
    out: &mpsc::Sender<U>,
    wrap: impl Fn(T) -> U,
) -> Option<R> {
    tokio::pin!(fut);
    let mut result = None;
    loop {
        tokio::select! {
            r = &mut fut, if result.is_none() => result = Some(r),
            item = items.recv() => match item {
                Some(item) => out.send(wrap(item)).await.ok()?,
                None => break,
            },
        }
    }
    Some(match result {
        Some(r) => r,
        None => fut.await,
    })
}

pub(super) async fn run_agent(
    agent: Arc<dyn Agent>,
    request: AgentRequest,
    out: mpsc::Sender<(u32, AgentMsg)>,
) {
    let turn = request.turn;
    let (tx, rx) = mpsc::channel(32);
    let fut = agent.respond(request, tx);
    if let Some(result) = pump(fut, rx, &out, |e| (turn, AgentMsg::Event(e))).await {
        let _ = out.send((turn, AgentMsg::Done(result))).await;
    }
}

pub(super) async fn tts_worker(
    tts: Arc<dyn TextToSpeech>,
    language: String,
    turn: u32,
    mut segments: mpsc::Receiver<(u32, String)>,
    out: mpsc::Sender<TtsMsg>,
) {
    while let Some((segment, text)) = segments.recv().await {
        let (tx, rx) = mpsc::channel(1);
        let fut = tts.synthesize(text, language.clone(), tx);
        let wrap = |audio| TtsMsg {
            turn,
            segment,
            audio: Some(audio),
            done: None,
        };
        let Some(result) = pump(fut, rx, &out, wrap).await else {
            return;
        };
        let done = TtsMsg {
            turn,
            segment,
            audio: None,
            done: Some(result),
        };
        if out.send(done).await.is_err() {
            return;
        }
    }
}
