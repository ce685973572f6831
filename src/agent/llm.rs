//! The LLM booking agent: instructions (fixed rules + the business prompt) and the conversation go
//! to an OpenAI-compatible [`ChatModel`]; tool calls run through the same tools as the offline
//! agent, in a bounded loop (`[booking] max_tool_rounds`).
//!
//! Streaming versus checking claims: text is split into sentences as it streams. A sentence that
//! makes no claim (booked / free or busy / sent) goes to TTS at once, so the caller hears the
//! first words early. A sentence with a claim waits for the end of its completion round: if the
//! round called tools, the claim is checked against what those tools returned; at the end of the
//! turn anything still unsupported is replaced by a truthful reply (and traced). So a claim is
//! never spoken before the tool that backs it has succeeded, and claim-free text is never delayed.
//!
//! Failure: if the model fails or times out before anything was spoken, the offline agent answers
//! the turn (it reads date, time and room from the last user message), so a caller can still book.
//! If it fails after words were spoken, the turn ends there and the engine's fallback applies.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::offline::{OfflineBookingAgent, PHONE_MAX_DIGITS, confirmation_reply, emit};
use super::tools::{self, ToolContext};
use super::usecases::Bookings;
use super::{BookingRuntime, GUARD_TRACE, TOOL_MEMORY};
use crate::booking::guard::{self, Evidence, SentenceBuffer, is_hebrew};
use crate::providers::{
    Agent, AgentError, AgentEvent, AgentRequest, BoxFuture, CallContext, Channel, ChatEvent,
    ChatMessage, ChatModel, ChatRequest, ProviderError, ToolCall, ToolSpec,
};

#[derive(Clone)]
pub struct BookingAgent {
    rt: Arc<BookingRuntime>,
    model: Arc<dyn ChatModel>,
    offline: OfflineBookingAgent,
}

/// Earlier tool calls remembered per conversation, newest kept.
const TOOL_MEMORY_LINES: usize = 8;
/// Bookings a conversation made or changed that the agent is reminded of, newest kept.
const TOOL_MEMORY_BOOKINGS: usize = 8;

/// What the LLM agent remembers of a conversation between turns (`TOOL_MEMORY`, in the
/// database): its recent tool calls with their results, and apart from them the appointments the
/// conversation booked, moved or cancelled. The history the model sees is capped (see
/// `super::history`), and so are the tool lines; the bookings are kept apart so that a booking
/// made early is still known however long the conversation runs.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ToolMemory {
    lines: Vec<String>,
    /// Appointment ids, oldest first.
    bookings: Vec<String>,
}

impl ToolMemory {
    /// Adds one turn's tool lines and touched appointments; forgets the oldest beyond the caps.
    fn add(&mut self, used: tools::ToolsUsed) {
        let tools::ToolsUsed { lines, bookings } = used;
        self.lines.extend(lines);
        let excess = self.lines.len().saturating_sub(TOOL_MEMORY_LINES);
        self.lines.drain(..excess);
        for id in bookings {
            self.bookings.retain(|b| *b != id);
            self.bookings.push(id);
        }
        let excess = self.bookings.len().saturating_sub(TOOL_MEMORY_BOOKINGS);
        self.bookings.drain(..excess);
    }
}

/// Per-turn output state: what was spoken, what waits for evidence.
struct Speaker<'a> {
    events: &'a mpsc::Sender<AgentEvent>,
    evidence: Evidence,
    held: Vec<String>,
    spoken: String,
    /// Words still allowed (phone: first reply ≤ 24 words); `None` = no limit.
    words_left: Option<usize>,
}

impl Speaker<'_> {
    async fn say(&mut self, sentence: &str) {
        if let Some(left) = self.words_left.as_mut() {
            let words = sentence.split_whitespace().count();
            // Always let the first sentence through; then stop at the limit.
            if !self.spoken.is_empty() && words > *left {
                *left = 0;
                return;
            }
            *left = left.saturating_sub(words);
        }
        self.spoken.push_str(sentence);
        let _ = self
            .events
            .send(AgentEvent::TextDelta(sentence.to_string()))
            .await;
    }

    /// Claim-free text goes out at once, unless an earlier sentence is held: then it waits too,
    /// so the reply keeps its order and nothing that builds on a held claim slips out.
    async fn sentence(&mut self, sentence: String) {
        if self.held.is_empty() && guard::claims(&sentence).is_empty() {
            self.say(&sentence).await;
        } else {
            self.held.push(sentence);
        }
    }

    /// Releases held sentences in order while the evidence supports them. At the first
    /// unsupported one the rest is withheld (traced); `replace` speaks a truthful reply instead.
    async fn release(&mut self, ctx: &ToolContext, replace: bool) {
        let held = std::mem::take(&mut self.held);
        let mut iter = held.into_iter();
        for s in iter.by_ref() {
            let false_claims = guard::unsupported(&s, self.evidence);
            if false_claims.is_empty() {
                self.say(&s).await;
                continue;
            }
            trace_false_claim(ctx, &s, self.evidence).await;
            if replace {
                let truthful = guard::truthful_reply(&false_claims, is_hebrew(&s));
                let lead = if self.spoken.is_empty() { "" } else { " " };
                self.say(&format!("{lead}{truthful}")).await;
            }
            break;
        }
        let withheld = iter.count();
        if withheld > 0 {
            tracing::debug!(conversation = %ctx.conversation_id, withheld, "sentences after a false claim withheld");
        }
    }
}

async fn trace_false_claim(ctx: &ToolContext, text: &str, evidence: Evidence) {
    let claims: Vec<&str> = guard::unsupported(text, evidence)
        .iter()
        .map(|c| c.as_str())
        .collect();
    ctx.trace(
        GUARD_TRACE,
        &serde_json::json!({"false_claims": claims, "text": text}),
        false,
        Some("false_claim"),
        Some(&format!(
            "LLM claimed {} without a successful tool call",
            claims.join(", ")
        )),
        0,
        ctx.rt.now_ms(),
    )
    .await;
    tracing::warn!(conversation = %ctx.conversation_id, ?claims, "LLM reply with a false claim withheld");
}

/// How the tool loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopEnd {
    /// The model answered in words (no tool calls in its last round).
    Done,
    /// The model failed or timed out; the reason, for the log.
    Failed(String),
}

/// Bounds of one turn's tool loop.
#[derive(Debug, Clone, Copy)]
pub struct LoopLimits {
    /// Completion rounds at most; the last one is offered no tools, so the model answers in words.
    pub rounds: u32,
    /// Per round, from the request to the end of the completion.
    pub timeout_ms: u64,
    pub max_tokens: u32,
    pub temperature: f32,
}

/// What an agent brings to the shared tool loop ([`run_tool_loop`]): its tool registry, and what
/// it does with the model's streamed sentences and with tool results. The customer agent and the
/// staff assistant each implement it; the loop (streaming, rounds, timeouts) is this one.
pub trait ToolHost: Send {
    /// The tools offered to the model (every round but the last).
    fn specs(&self) -> Vec<ToolSpec>;
    /// One finished sentence of the model's text, as it streams.
    fn sentence(&mut self, sentence: String) -> impl Future<Output = ()> + Send;
    /// Runs one tool call; the answer is the tool message's content (JSON text). Never fails:
    /// a failure is a `{ok:false, error, reason}` result the model reads.
    fn call(&mut self, call: &ToolCall) -> impl Future<Output = String> + Send;
    /// After the tool calls of one round have run.
    fn round_done(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The LLM tool loop both agents share: streams each completion (sentences to the host as they
/// arrive), runs the tool calls through the host and feeds their results back, for at most
/// `limits.rounds` rounds, each bounded by `limits.timeout_ms`.
pub async fn run_tool_loop<H: ToolHost>(
    model: &dyn ChatModel,
    mut messages: Vec<ChatMessage>,
    limits: &LoopLimits,
    host: &mut H,
) -> LoopEnd {
    let rounds = limits.rounds.max(1);
    for round in 0..rounds {
        let last_round = round + 1 == rounds;
        let req = ChatRequest {
            messages: messages.clone(),
            // The last round gets no tools, so the model has to answer in words.
            tools: if last_round { Vec::new() } else { host.specs() },
            max_tokens: limits.max_tokens,
            temperature: limits.temperature,
        };
        let (tx, mut rx) = mpsc::channel::<ChatEvent>(64);
        let fut = model.complete(req, tx);
        tokio::pin!(fut);
        let deadline = tokio::time::sleep(Duration::from_millis(limits.timeout_ms));
        tokio::pin!(deadline);
        let mut buffer = SentenceBuffer::default();
        let result = loop {
            tokio::select! {
                Some(ChatEvent::TextDelta(d)) = rx.recv() => {
                    for s in buffer.push(&d) {
                        host.sentence(s).await;
                    }
                }
                r = &mut fut => break Some(r),
                _ = &mut deadline => break None,
            }
        };
        while let Ok(ChatEvent::TextDelta(d)) = rx.try_recv() {
            for s in buffer.push(&d) {
                host.sentence(s).await;
            }
        }
        let completion = match result {
            Some(Ok(c)) => c,
            Some(Err(e)) => return LoopEnd::Failed(e.to_string()),
            None => return LoopEnd::Failed("LLM timed out".into()),
        };
        if let Some(rest) = buffer.finish() {
            host.sentence(rest).await;
        }
        if completion.tool_calls.is_empty() {
            return LoopEnd::Done;
        }
        messages.push(ChatMessage::Assistant {
            text: completion.text.clone(),
            tool_calls: completion.tool_calls.clone(),
        });
        for call in &completion.tool_calls {
            let content = host.call(call).await;
            messages.push(ChatMessage::Tool {
                call_id: call.id.clone(),
                content,
            });
        }
        host.round_done().await;
    }
    LoopEnd::Failed("tool loop exhausted".into())
}

/// The customer agent's side of the tool loop: the booking tools, the truthfulness guard on
/// what is spoken, and what the turn learns from the results.
struct CustomerTools<'a> {
    ctx: &'a ToolContext,
    speaker: Speaker<'a>,
    user: &'a str,
    /// If the model fails after a booking was made this turn, we still say so truthfully.
    booked_reply: Option<String>,
    collect_digits: bool,
}

impl ToolHost for CustomerTools<'_> {
    fn specs(&self) -> Vec<ToolSpec> {
        tools::specs()
    }

    async fn sentence(&mut self, sentence: String) {
        self.speaker.sentence(sentence).await;
    }

    async fn call(&mut self, call: &ToolCall) -> String {
        let ctx = self.ctx;
        let out = ctx.call(&call.name, &call.arguments).await;
        out.add_evidence(&mut self.speaker.evidence);
        if out.ok && out.tool == tools::CREATE {
            let v = &out.value;
            let when = format!(
                "{} {}",
                v["date_iso"].as_str().unwrap_or(""),
                v["time_display"].as_str().unwrap_or("")
            );
            self.booked_reply = Some(confirmation_reply(
                v["whatsapp_status"].as_str().unwrap_or("pending"),
                is_hebrew(self.user),
                &when,
            ));
        }
        if out.error() == Some("need_phone") && ctx.channel == Channel::Phone {
            self.collect_digits = true;
        }
        out.value.to_string()
    }

    /// Text said before the tool calls: only what the results now support goes out; the next
    /// round answers with the results in hand.
    async fn round_done(&mut self) {
        self.speaker.release(self.ctx, false).await;
    }
}

impl BookingAgent {
    pub fn new(rt: Arc<BookingRuntime>, model: Arc<dyn ChatModel>) -> Self {
        let offline = OfflineBookingAgent::new(rt.clone());
        Self { rt, model, offline }
    }

    /// The conversation's bookings as the booking system has them now, one line each.
    async fn bookings_known(
        &self,
        ctx: &ToolContext,
        ids: &[String],
    ) -> Result<Vec<String>, AgentError> {
        let p = &ctx.settings.policy;
        let rooms = Bookings::new(&self.rt, &ctx.settings);
        let mut lines = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(a) = self.rt.store.appointment(id).await? else {
                continue;
            };
            lines.push(format!(
                "{id}: {} {}, room {}, under the name {:?}, status {}",
                p.date_iso(a.start_ms),
                p.time_display(a.start_ms),
                rooms
                    .resource_name(a.resource_id.as_deref())
                    .unwrap_or_else(|| "any".into()),
                a.customer_name,
                a.status,
            ));
        }
        Ok(lines)
    }

    fn system_prompt(
        &self,
        ctx: &ToolContext,
        bookings: &[String],
        earlier_tools: &[String],
    ) -> String {
        let p = &ctx.settings.policy;
        let now = self.rt.now_ms();
        let local = p.local(now);
        let phone = match &ctx.caller_phone {
            Some(_) => "known from caller id (tools use it automatically; do not ask for it)",
            None => "unknown",
        };
        let rooms: Vec<&str> = ctx
            .settings
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let mut prompt = format!(
            "{}\n\nNow: {} {} ({:?}), timezone {}. Rooms: {}. Customer phone: {phone}.",
            ctx.settings.instructions,
            local.date(),
            p.time_display(now),
            local.date().weekday(),
            ctx.settings.business.timezone,
            rooms.join(", "),
        );
        if !bookings.is_empty() {
            prompt.push_str(
                "\n\nAppointments this conversation booked, moved or cancelled, as the booking \
                 system has them now (earlier messages may no longer be shown):",
            );
            for line in bookings {
                prompt.push_str("\n- ");
                prompt.push_str(line);
            }
        }
        if !earlier_tools.is_empty() {
            prompt.push_str(
                "\n\nYour tool calls in earlier turns of this conversation, oldest first. They \
                 may be out of date: call the tool again in this turn before claiming anything.",
            );
            for line in earlier_tools {
                prompt.push_str("\n- ");
                prompt.push_str(line);
            }
        }
        prompt
    }

    async fn turn(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> Result<(), AgentError> {
        let ctx = self.rt.turn_context(&request).await?;
        let user = super::user_text(&request);
        let memory_key = request.call.call_sid.clone();
        let mut memory: ToolMemory = self
            .rt
            .load_state(&memory_key, TOOL_MEMORY)
            .await?
            .unwrap_or_default();
        let bookings = self.bookings_known(&ctx, &memory.bookings).await?;
        let mut messages = vec![ChatMessage::System(self.system_prompt(
            &ctx,
            &bookings,
            &memory.lines,
        ))];
        messages.extend(super::history::chat_messages(
            &request,
            self.rt.config.history_cap(),
        ));
        let first_reply = request.turn <= 1;
        let speaker = Speaker {
            events: &events,
            evidence: Evidence::default(),
            held: Vec::new(),
            spoken: String::new(),
            words_left: (ctx.settings.first_reply_max_words > 0 && first_reply)
                .then_some(ctx.settings.first_reply_max_words),
        };
        let mut host = CustomerTools {
            ctx: &ctx,
            speaker,
            user: &user,
            booked_reply: None,
            collect_digits: false,
        };
        let limits = LoopLimits {
            rounds: self.rt.config.max_tool_rounds,
            timeout_ms: self.rt.config.llm_timeout_ms,
            max_tokens: ctx.settings.max_tokens,
            temperature: ctx.settings.temperature,
        };
        let end = run_tool_loop(self.model.as_ref(), messages, &limits, &mut host).await;
        let CustomerTools {
            mut speaker,
            booked_reply,
            collect_digits,
            ..
        } = host;
        if let LoopEnd::Failed(reason) = &end {
            tracing::warn!(conversation = %ctx.conversation_id, %reason, "LLM turn failed");
        }
        // Nothing was said and nothing booked: the offline dialog answers this turn.
        let mut fallback = if matches!(end, LoopEnd::Failed(_))
            && booked_reply.is_none()
            && speaker.spoken.trim().is_empty()
        {
            Some(self.offline.turn_with_tools(&request).await)
        } else {
            None
        };
        // What the fallback's tools did is remembered like the model's own calls, so the next
        // turn's prompt lists its bookings and its tool lines.
        let mut used = ctx.this_turn.take();
        if let Some(Ok((_, offline))) = &mut fallback {
            used.extend(std::mem::take(offline));
        }
        if !used.is_empty() {
            memory.add(used);
            self.rt.save_state(&memory_key, TOOL_MEMORY, &memory).await;
        }
        if let Some(answer) = fallback {
            let (reply, _) = answer?;
            emit(&reply, &events).await;
            return Ok(());
        }
        match end {
            LoopEnd::Done => {
                // Held claims the turn's tools never backed: replaced by one truthful reply.
                speaker.release(&ctx, true).await;
            }
            LoopEnd::Failed(_) => {
                if let Some(reply) = booked_reply {
                    // The booking stands; tell the caller instead of starting over.
                    let lead = if speaker.spoken.is_empty() { "" } else { " " };
                    speaker.say(&format!("{lead}{reply}")).await;
                }
            }
        }
        if collect_digits {
            let _ = events
                .send(AgentEvent::CollectDigits {
                    max_digits: PHONE_MAX_DIGITS,
                })
                .await;
        }
        self.rt.record_turn(&ctx, &user, &speaker.spoken).await;
        Ok(())
    }
}

impl Agent for BookingAgent {
    fn name(&self) -> &'static str {
        "llm-booking"
    }

    /// Warms the model's pooled connection (keep-warm calls this too).
    fn warm(&self) -> BoxFuture<'static, Result<(), ProviderError>> {
        self.model.warm()
    }

    fn prepare(&self, call_sid: &str) {
        self.model.prepare(call_sid);
    }

    fn call_ended(&self, call: &CallContext, channel: Channel) {
        // Forgets every kind of state, the tool memory included.
        self.offline.call_ended(call, channel);
    }

    fn respond(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
    ) -> BoxFuture<'static, Result<(), AgentError>> {
        let this = self.clone();
        Box::pin(async move { this.turn(request, events).await })
    }
}
