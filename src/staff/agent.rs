//! The staff assistant: one turn of a staff member's chat in the console. The LLM path runs the
//! shared tool loop ([`crate::agent::llm::run_tool_loop`]) with the staff prompt and the staff
//! tools; the offline path ([`super::offline`]) reads the common commands deterministically. The
//! offline path answers when no LLM is configured, and when the LLM fails a turn.
//!
//! A conversation is one staff account's chat with one business (`staff_chat_messages`,
//! migration 0016): user messages, replies and every tool call with its result, so the page
//! shows the history and the next LLM turn sees earlier tool results (confirmation tokens
//! included) as tool messages: data, never instructions.
//!
//! The assistant is only ever built by the console for an authenticated principal: no customer
//! channel (phone, WhatsApp) holds a [`StaffTools`] or calls [`StaffAgent::turn`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::offline::{self, Command, Context};
use super::tools::{StaffPrincipal, StaffToolbox};
use crate::agent::llm::{LoopEnd, LoopLimits, ToolHost, run_tool_loop};
use crate::agent::{BookingError, BookingRuntime, StateKind};
use crate::booking::guard::is_hebrew;
use crate::config::StaffAgentConfig;
use crate::providers::{BoxFuture, Channel, ChatMessage, ChatModel, ToolCall, ToolSpec};
use crate::store::StoreError;
use crate::store::staff_chat::StaffChatMessage;

/// The staff tools as the assistant sees them, already bound to one authenticated staff member
/// and one business (the console binds them).
pub trait StaffTools: Send + Sync {
    /// The tools offered to the model.
    fn specs(&self) -> Vec<ToolSpec>;
    /// Runs one tool; never fails (refusals are `{ok:false, error, reason}`).
    fn call<'a>(&'a self, name: &'a str, args: Value) -> BoxFuture<'a, Value>;
}

/// What the offline path waits for between turns (per staff member and business).
const STAFF_PENDING: StateKind = StateKind {
    name: "staff_pending",
    version: 1,
};

/// Chat messages the LLM sees from earlier turns.
const HISTORY_MESSAGES: usize = 40;
/// Largest reply the model may write.
const MAX_TOKENS: u32 = 700;

#[derive(Debug, thiserror::Error)]
pub enum StaffAgentError {
    #[error(transparent)]
    Booking(#[from] BookingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("empty message")]
    Empty,
}

/// One tool call of a turn, as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolLog {
    pub call_id: String,
    pub name: String,
    pub arguments: Value,
    pub result: Value,
}

/// The answer to one staff message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaffReply {
    pub ok: bool,
    pub reply: String,
    /// `llm` or `offline`.
    pub mode: &'static str,
    pub tool_calls: Vec<ToolLog>,
}

/// The offline path's memory between turns: a confirmation it asked for, a customer it asked
/// the staff member to choose.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pending {
    confirm: Option<PendingConfirm>,
    choose: Option<PendingChoice>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingConfirm {
    tool: String,
    args: Value,
    token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingChoice {
    command: Command,
    candidates: Vec<Value>,
}

/// The staff assistant of every business: the booking runtime (store, clock, settings), the
/// model if one is configured, the default prompt.
pub struct StaffAgent {
    rt: Arc<BookingRuntime>,
    model: Option<Arc<dyn ChatModel>>,
    config: StaffAgentConfig,
    toolbox: Arc<StaffToolbox>,
}

/// The staff toolbox bound to one authenticated staff member (and so one business).
pub struct BoundTools {
    toolbox: Arc<StaffToolbox>,
    who: StaffPrincipal,
    rt: Arc<BookingRuntime>,
}

impl StaffTools for BoundTools {
    fn specs(&self) -> Vec<ToolSpec> {
        StaffToolbox::specs()
    }

    fn call<'a>(&'a self, name: &'a str, args: Value) -> BoxFuture<'a, Value> {
        Box::pin(async move {
            self.toolbox
                .call(&self.who, name, args, self.rt.now_ms())
                .await
        })
    }
}

/// One staff message.
pub struct StaffTurn<'a> {
    pub business_id: &'a str,
    /// Who is typing (stored with the message; the conversation key).
    pub account_email: &'a str,
    pub text: &'a str,
    pub tools: &'a dyn StaffTools,
}

impl StaffAgent {
    pub fn new(
        rt: Arc<BookingRuntime>,
        model: Option<Arc<dyn ChatModel>>,
        config: StaffAgentConfig,
    ) -> Arc<Self> {
        let toolbox = Arc::new(StaffToolbox::new(rt.clone(), config.clone()));
        Arc::new(Self {
            rt,
            model,
            config,
            toolbox,
        })
    }

    /// The staff tools for one authenticated staff member of one business.
    pub fn tools_for(&self, who: StaffPrincipal) -> BoundTools {
        BoundTools {
            toolbox: self.toolbox.clone(),
            who,
            rt: self.rt.clone(),
        }
    }

    /// `llm` when a model is configured, else `offline`.
    pub fn mode(&self) -> &'static str {
        if self.model.is_some() {
            "llm"
        } else {
            "offline"
        }
    }

    /// The prompt in force for a business: its own, else `[staff_agent] prompt`.
    pub async fn business_prompt(&self, business_id: &str) -> Result<String, StoreError> {
        Ok(match self.rt.store.staff_prompt(business_id).await? {
            Some(row) => row.prompt,
            None => self.config.prompt.clone(),
        })
    }

    /// The configured default prompt.
    pub fn default_prompt(&self) -> &str {
        &self.config.prompt
    }

    /// A staff member's chat with a business, oldest first.
    pub async fn history(
        &self,
        business_id: &str,
        account_email: &str,
        limit: usize,
    ) -> Result<Vec<StaffChatMessage>, StoreError> {
        self.rt
            .store
            .staff_chat(business_id, account_email, limit)
            .await
    }

    fn conversation_key(business_id: &str, account_email: &str) -> String {
        format!("staff:{business_id}:{account_email}")
    }

    /// Answers one staff message and stores the turn (message, tool calls, reply).
    pub async fn turn(&self, t: StaffTurn<'_>) -> Result<StaffReply, StaffAgentError> {
        let text = t.text.trim();
        if text.is_empty() {
            return Err(StaffAgentError::Empty);
        }
        let settings = self.rt.settings(t.business_id, Channel::Whatsapp).await?;
        let key = Self::conversation_key(t.business_id, t.account_email);
        let mut pending: Pending = self
            .rt
            .load_state(&key, STAFF_PENDING)
            .await?
            .unwrap_or_default();
        let now_ms = self.rt.now_ms();
        let earlier = self
            .history(t.business_id, t.account_email, HISTORY_MESSAGES)
            .await?;
        let mut mode = "offline";
        let mut outcome = None;
        if let Some(model) = &self.model {
            let prompt = super::prompt::system_prompt(
                &settings,
                &self.business_prompt(t.business_id).await?,
                now_ms,
            );
            let mut messages = vec![ChatMessage::System(prompt)];
            messages.extend(earlier.iter().filter_map(chat_message).flatten());
            messages.push(ChatMessage::User(text.to_string()));
            let mut host = StaffHost {
                tools: t.tools,
                text: String::new(),
                log: Vec::new(),
                pending: &mut pending,
            };
            let limits = LoopLimits {
                rounds: self.rt.config.max_tool_rounds,
                timeout_ms: self.rt.config.llm_timeout_ms,
                max_tokens: MAX_TOKENS,
                temperature: 0.1,
            };
            let end = run_tool_loop(model.as_ref(), messages, &limits, &mut host).await;
            let StaffHost {
                text: said, log, ..
            } = host;
            match end {
                LoopEnd::Done if !said.trim().is_empty() => {
                    mode = "llm";
                    outcome = Some((said.trim().to_string(), log));
                }
                LoopEnd::Done => {
                    tracing::warn!(
                        business = t.business_id,
                        "staff LLM answered nothing; offline answers"
                    );
                    outcome = self.offline_after(log, text);
                }
                LoopEnd::Failed(reason) => {
                    tracing::warn!(business = t.business_id, %reason, "staff LLM turn failed; offline answers");
                    outcome = self.offline_after(log, text);
                }
            }
        }
        let (reply, log) = match outcome {
            Some(done) => done,
            None => {
                let rooms = &settings.resources;
                let now = settings.policy.zoned(now_ms);
                let cx = Context { now: &now, rooms };
                offline_turn(text, &cx, t.tools, &mut pending).await
            }
        };
        self.rt.save_state(&key, STAFF_PENDING, &pending).await;
        let row = |role: &str, text: String| StaffChatMessage {
            business_id: t.business_id.to_string(),
            account_email: t.account_email.to_string(),
            role: role.into(),
            text,
            tool_name: None,
            arguments_json: None,
            call_id: None,
            mode: None,
            at_ms: now_ms,
        };
        let mut rows = vec![row("user", text.to_string())];
        for call in &log {
            rows.push(StaffChatMessage {
                tool_name: Some(call.name.clone()),
                arguments_json: Some(call.arguments.to_string()),
                call_id: Some(call.call_id.clone()),
                ..row("tool", call.result.to_string())
            });
        }
        rows.push(StaffChatMessage {
            mode: Some(mode.into()),
            ..row("assistant", reply.clone())
        });
        self.rt.store.append_staff_chat(&rows).await?;
        Ok(StaffReply {
            ok: true,
            reply,
            mode,
            tool_calls: log,
        })
    }

    /// After a failed LLM turn: if its tools already ran, report their results (running the
    /// command again would act twice); else `None`, and the offline reader answers the message.
    fn offline_after(&self, log: Vec<ToolLog>, text: &str) -> Option<(String, Vec<ToolLog>)> {
        if log.is_empty() {
            return None;
        }
        let he = is_hebrew(text);
        let reply = log
            .iter()
            .map(|c| offline::report(&c.name, &c.result, he))
            .collect::<Vec<_>>()
            .join("\n\n");
        Some((reply, log))
    }
}

/// An earlier stored message as the model sees it: tool calls as an assistant call plus its
/// result in a tool message (data, never instructions).
fn chat_message(m: &StaffChatMessage) -> Option<Vec<ChatMessage>> {
    match m.role.as_str() {
        "user" => Some(vec![ChatMessage::User(m.text.clone())]),
        "assistant" => Some(vec![ChatMessage::Assistant {
            text: m.text.clone(),
            tool_calls: Vec::new(),
        }]),
        "tool" => {
            let call_id = m.call_id.clone()?;
            Some(vec![
                ChatMessage::Assistant {
                    text: String::new(),
                    tool_calls: vec![ToolCall {
                        id: call_id.clone(),
                        name: m.tool_name.clone()?,
                        arguments: m.arguments_json.clone().unwrap_or_else(|| "{}".into()),
                    }],
                },
                ChatMessage::Tool {
                    call_id,
                    content: m.text.clone(),
                },
            ])
        }
        _ => None,
    }
}

/// The staff assistant's side of the shared tool loop.
struct StaffHost<'a> {
    tools: &'a dyn StaffTools,
    text: String,
    log: Vec<ToolLog>,
    pending: &'a mut Pending,
}

impl ToolHost for StaffHost<'_> {
    fn specs(&self) -> Vec<ToolSpec> {
        self.tools.specs()
    }

    async fn sentence(&mut self, sentence: String) {
        self.text.push_str(&sentence);
    }

    async fn call(&mut self, call: &ToolCall) -> String {
        let (arguments, result) = match serde_json::from_str::<Value>(&call.arguments) {
            Ok(args) => {
                let result = self.tools.call(&call.name, args.clone()).await;
                (args, result)
            }
            Err(e) => (
                json!({"unparsed": call.arguments}),
                json!({"ok": false, "error": "bad_arguments",
                       "reason": format!("arguments are not JSON: {e}")}),
            ),
        };
        remember_confirmation(self.pending, &call.name, &arguments, &result);
        let content = result.to_string();
        self.log.push(ToolLog {
            call_id: call.id.clone(),
            name: call.name.clone(),
            arguments,
            result,
        });
        content
    }
}

/// A `confirmation_required` answer is remembered, so a "yes" confirms it on either path; a call
/// that spent a token forgets it.
fn remember_confirmation(pending: &mut Pending, tool: &str, args: &Value, result: &Value) {
    if args.get("confirm").is_some() {
        pending.confirm = None;
    }
    if result.get("error").and_then(Value::as_str) == Some("confirmation_required")
        && let Some(token) = result.get("confirm").and_then(Value::as_str)
    {
        let mut args = args.clone();
        if let Some(obj) = args.as_object_mut() {
            obj.remove("confirm");
        }
        pending.confirm = Some(PendingConfirm {
            tool: tool.into(),
            args,
            token: token.into(),
        });
    }
}

/// Runs one offline tool call and logs it.
async fn run(tools: &dyn StaffTools, log: &mut Vec<ToolLog>, tool: &str, args: Value) -> Value {
    let result = tools.call(tool, args.clone()).await;
    log.push(ToolLog {
        call_id: crate::store::booking::new_id("offline"),
        name: tool.into(),
        arguments: args,
        result: result.clone(),
    });
    result
}

/// The candidates of an ambiguous name in a result, when there are several.
fn ambiguous_candidates(result: &Value) -> Option<Vec<Value>> {
    let ambiguous = result.get("error").and_then(Value::as_str) == Some("ambiguous_name")
        || result["summary"]["ambiguous_name"].as_bool() == Some(true);
    let candidates = result.get("candidates")?.as_array()?;
    (ambiguous && candidates.len() > 1).then(|| candidates.clone())
}

/// One offline turn: reads the staff member's message (and only it), calls the tools, reports.
async fn offline_turn(
    text: &str,
    cx: &Context<'_>,
    tools: &dyn StaffTools,
    pending: &mut Pending,
) -> (String, Vec<ToolLog>) {
    let he = is_hebrew(text);
    let mut log = Vec::new();
    let mut command = offline::parse(text, cx);
    // An answer to "which Dana?".
    if let Some(choice) = pending.choose.take() {
        match offline::pick_candidate(text, &choice.candidates) {
            Some(i) => {
                let phone = choice.candidates[i]
                    .get("customer_phone")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                command = narrowed(choice.command, phone);
            }
            None if matches!(command, Command::Unknown) => {
                let reply = offline::candidates_question("", &choice.candidates, he);
                pending.choose = Some(choice);
                return (reply, log);
            }
            None => {}
        }
    }
    let reply = match command {
        Command::Confirm => match pending.confirm.take() {
            Some(c) => {
                let mut args = c.args.clone();
                args["confirm"] = json!(c.token);
                let result = run(tools, &mut log, &c.tool, args).await;
                remember_confirmation(pending, &c.tool, &c.args, &result);
                offline::report(&c.tool, &result, he)
            }
            None => offline::say(
                he,
                "Nothing is waiting for a confirmation.",
                "אין שום פעולה שממתינה לאישור.",
            ),
        },
        Command::Decline => {
            let had = pending.confirm.take().is_some();
            if had {
                offline::say(he, "OK, nothing changed.", "בסדר, שום דבר לא השתנה.")
            } else {
                offline::say(he, "OK.", "בסדר.")
            }
        }
        Command::Help => offline::help(he),
        Command::Unknown => {
            let lead = offline::say(he, "I did not understand that. ", "לא הבנתי. ");
            format!("{lead}{}", offline::help(he))
        }
        Command::Incomplete(missing) => offline::ask_missing(missing, he),
        command => {
            let Some(call) = offline::call_for(&command) else {
                return (offline::help(he), log);
            };
            let result = run(tools, &mut log, &call.tool, call.args.clone()).await;
            if let Some(candidates) = ambiguous_candidates(&result) {
                let name = match &command {
                    Command::Find(s) | Command::Cancel(s) => s.name.clone().unwrap_or_default(),
                    _ => String::new(),
                };
                let question = offline::candidates_question(&name, &candidates, he);
                pending.choose = Some(PendingChoice {
                    command,
                    candidates,
                });
                question
            } else {
                remember_confirmation(pending, &call.tool, &call.args, &result);
                let result = match &command {
                    Command::FreeSlots {
                        part: Some(part), ..
                    } => offline::slots_in_part(result, *part),
                    _ => result,
                };
                offline::report(&call.tool, &result, he)
            }
        }
    };
    (reply, log)
}

/// The command with its customer name replaced by the chosen customer's phone.
fn narrowed(command: Command, phone: Option<String>) -> Command {
    let narrow = |mut s: offline::Selection| {
        if phone.is_some() {
            s.name = None;
            s.phone = phone.clone();
        }
        s
    };
    match command {
        Command::Find(s) => Command::Find(narrow(s)),
        Command::Cancel(s) => Command::Cancel(narrow(s)),
        other => other,
    }
}
