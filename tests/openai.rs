//! `OpenAiChat` against the fake OpenAI server (`kav::testing::fake_openai`) on
//! 127.0.0.1:0: recorded vendor streams replayed byte for byte, scripted tool calls, errors,
//! retries, timeouts and hang-ups.
//!
//! These use real sockets, so they run on real time: timeouts are either generous (never reached)
//! or tiny against a server that never answers; nothing asserts how fast anything was.

use std::time::Duration;

use kav::config::LlmConfig;
use kav::providers::openai::OpenAiChat;
use kav::providers::{
    ChatError, ChatEvent, ChatMessage, ChatModel, ChatRequest, ToolCall, ToolSpec,
};
use kav::testing::fake_openai::{
    FIXTURE_PARALLEL_TOOL_CALLS, FIXTURE_SINGLE_TOOL_CALL, FIXTURE_TEXT, FakeOpenAi, FakeReply,
};
use serde_json::json;
use tokio::sync::mpsc;

fn config(fake: &FakeOpenAi) -> LlmConfig {
    LlmConfig {
        base_url: fake.base_url(),
        model: "test-model".into(),
        // Never reached in tests that expect success: slow CI must not turn them into timeouts.
        first_byte_timeout_ms: 20_000,
        timeout_ms: 30_000,
        ..LlmConfig::default()
    }
}

fn chat(fake: &FakeOpenAi) -> OpenAiChat {
    OpenAiChat::new(&config(fake), None).unwrap()
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::System("be brief".into()),
            ChatMessage::User(text.into()),
        ],
        tools: vec![],
        max_tokens: 60,
        temperature: 0.2,
    }
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: arguments.into(),
    }
}

/// Runs one completion and returns it with every text delta streamed during it.
async fn complete(
    model: &OpenAiChat,
    req: ChatRequest,
) -> (
    Result<kav::providers::ChatCompletion, ChatError>,
    Vec<String>,
) {
    let (tx, mut rx) = mpsc::channel(256);
    let result = model.complete(req, tx).await;
    let mut deltas = Vec::new();
    while let Ok(ChatEvent::TextDelta(d)) = rx.try_recv() {
        deltas.push(d);
    }
    (result, deltas)
}

#[tokio::test]
async fn recorded_single_tool_call_is_assembled_exactly() {
    let fake = FakeOpenAi::start(vec![FakeReply::fixture(FIXTURE_SINGLE_TOOL_CALL).unwrap()]).await;
    let (result, deltas) = complete(&chat(&fake), request("weather?")).await;
    let done = result.unwrap();
    assert_eq!(
        done.tool_calls,
        vec![call(
            "call_c91SqDXlYFuETYv8mUHzz6pp",
            "GetWeatherArgs",
            r#"{"city":"Edinburgh","country":"UK","units":"c"}"#
        )]
    );
    assert_eq!(done.finish_reason, "tool_calls");
    assert_eq!(done.text, "");
    assert!(deltas.is_empty());
    assert_eq!(fake.streams_finished(), 1);
}

#[tokio::test]
async fn recorded_parallel_tool_calls_are_assembled_by_index() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::fixture(FIXTURE_PARALLEL_TOOL_CALLS).unwrap(),
    ])
    .await;
    let (result, _) = complete(&chat(&fake), request("weather and stock?")).await;
    let done = result.unwrap();
    assert_eq!(
        done.tool_calls,
        vec![
            call(
                "call_JMW1whyEaYG438VE1OIflxA2",
                "GetWeatherArgs",
                r#"{"city": "Edinburgh", "country": "GB", "units": "c"}"#
            ),
            call(
                "call_DNYTawLBoN8fj3KN6qU9N1Ou",
                "get_stock_price",
                r#"{"ticker": "AAPL", "exchange": "NASDAQ"}"#
            ),
        ]
    );
    assert_eq!(done.finish_reason, "tool_calls");
}

#[tokio::test]
async fn recorded_text_streams_every_delta_in_order() {
    let fake = FakeOpenAi::start(vec![FakeReply::fixture(FIXTURE_TEXT).unwrap()]).await;
    let (result, deltas) = complete(&chat(&fake), request("weather in SF?")).await;
    let done = result.unwrap();
    let expected = "I'm unable to provide real-time weather updates. To get the current weather in \
                    San Francisco, I recommend checking a reliable weather website or a weather app.";
    assert_eq!(done.text, expected);
    assert_eq!(done.finish_reason, "stop");
    assert!(done.tool_calls.is_empty());
    // The recording has 30 non-empty content deltas; each is forwarded as it is, in order.
    assert_eq!(deltas.len(), 30);
    assert_eq!(deltas[0], "I'm");
    assert_eq!(deltas.concat(), expected);
    assert!(done.ttfb_ms <= done.total_ms);
}

#[tokio::test]
async fn text_deltas_arrive_while_the_stream_is_still_open() {
    // The server sends role + two deltas and then goes quiet: the deltas must reach us anyway,
    // i.e. they are streamed, not delivered with the completion.
    let fake = FakeOpenAi::start(vec![
        FakeReply::text("Hello there, friend.", 2).stall_after(3),
    ])
    .await;
    let model = chat(&fake);
    let (tx, mut rx) = mpsc::channel(8);
    let completion = tokio::spawn({
        let model = model.clone();
        async move { model.complete(request("hi"), tx).await }
    });
    assert_eq!(
        rx.recv().await,
        Some(ChatEvent::TextDelta("Hello ther".into()))
    );
    assert_eq!(
        rx.recv().await,
        Some(ChatEvent::TextDelta("e, friend.".into()))
    );
    assert!(!completion.is_finished());
    completion.abort();
}

#[tokio::test]
async fn scripted_parallel_tool_calls_survive_interleaved_fragments() {
    let calls = vec![
        call(
            "call_1",
            "find_slots",
            r#"{"service":"haircut","day":"2026-11-24"}"#,
        ),
        call("call_2", "lookup_customer", r#"{"phone":"+972501234567"}"#),
        call("call_3", "no_args", "{}"),
    ];
    let fake = FakeOpenAi::start(vec![FakeReply::tool_calls(calls.clone(), 5).interleaved()]).await;
    let (result, deltas) = complete(&chat(&fake), request("book me")).await;
    let done = result.unwrap();
    assert_eq!(done.tool_calls, calls);
    assert_eq!(done.finish_reason, "tool_calls");
    assert!(deltas.is_empty());
}

#[tokio::test]
async fn the_request_carries_model_settings_tools_and_tool_turns() {
    let fake = FakeOpenAi::start(vec![FakeReply::text("Booked.", 1)]).await;
    let schema =
        json!({"type": "object", "properties": {"day": {"type": "string"}}, "required": ["day"]});
    let req = ChatRequest {
        messages: vec![
            ChatMessage::System("You book haircuts.".into()),
            ChatMessage::User("Tomorrow please".into()),
            ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![call("call_9", "book", r#"{"day":"tomorrow"}"#)],
            },
            ChatMessage::Tool {
                call_id: "call_9".into(),
                content: r#"{"ok":true}"#.into(),
            },
        ],
        tools: vec![ToolSpec {
            name: "book".into(),
            description: "Books a slot".into(),
            parameters: schema.clone(),
        }],
        max_tokens: 77,
        temperature: 0.5,
    };
    let (result, _) = complete(&chat(&fake), req).await;
    assert_eq!(result.unwrap().text, "Booked.");
    let bodies = fake.requests();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_tokens"], 77);
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(
        body["tools"],
        json!([{"type": "function", "function": {"name": "book", "description": "Books a slot", "parameters": schema}}])
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You book haircuts."},
            {"role": "user", "content": "Tomorrow please"},
            {"role": "assistant", "tool_calls": [{"type": "function", "id": "call_9",
                "function": {"name": "book", "arguments": "{\"day\":\"tomorrow\"}"}}]},
            {"role": "tool", "content": "{\"ok\":true}", "tool_call_id": "call_9"},
        ])
    );
    // No key configured: a local server gets an empty bearer, never someone else's key.
    assert_eq!(
        fake.recorded()[0].authorization.as_deref().map(str::trim),
        Some("Bearer")
    );
}

#[tokio::test]
async fn api_key_goes_in_the_bearer_header() {
    let fake = FakeOpenAi::start(vec![FakeReply::text("ok", 1)]).await;
    let model = OpenAiChat::new(&config(&fake), Some("sk-test-123".into())).unwrap();
    complete(&model, request("hi")).await.0.unwrap();
    let recorded = fake.recorded();
    assert_eq!(
        recorded[0].authorization.as_deref(),
        Some("Bearer sk-test-123")
    );
    assert_eq!(recorded[0].path, "/v1/chat/completions");
}

#[tokio::test]
async fn azure_uses_deployment_path_api_version_and_api_key_header() {
    let fake = FakeOpenAi::start(vec![FakeReply::text("ok", 1)]).await;
    let cfg = LlmConfig {
        base_url: format!("http://{}", fake.addr()),
        model: "my-deployment".into(),
        azure_api_version: "2024-10-21".into(),
        ..config(&fake)
    };
    let model = OpenAiChat::new(&cfg, Some("azure-key".into())).unwrap();
    complete(&model, request("hi")).await.0.unwrap();
    let recorded = fake.recorded();
    assert_eq!(
        recorded[0].path,
        "/openai/deployments/my-deployment/chat/completions"
    );
    assert_eq!(recorded[0].query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(recorded[0].api_key.as_deref(), Some("azure-key"));
}

#[tokio::test]
async fn no_first_byte_in_time_is_a_timeout_and_not_retried() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::text("too late", 1).delay_first_byte(Duration::from_secs(60)),
        FakeReply::text("should not be asked for", 1),
    ])
    .await;
    let cfg = LlmConfig {
        first_byte_timeout_ms: 50,
        ..config(&fake)
    };
    let model = OpenAiChat::new(&cfg, None).unwrap();
    let (result, deltas) = complete(&model, request("hi")).await;
    assert!(matches!(result, Err(ChatError::Timeout)), "{result:?}");
    assert!(deltas.is_empty());
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_stream_that_stalls_mid_way_hits_the_overall_timeout() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::text("Hello there, friend.", 4).stall_after(2),
    ])
    .await;
    let cfg = LlmConfig {
        // Long enough for the first delta to arrive on a loaded machine, short for a test.
        timeout_ms: 1_500,
        ..config(&fake)
    };
    let model = OpenAiChat::new(&cfg, None).unwrap();
    let (result, deltas) = complete(&model, request("hi")).await;
    assert!(matches!(result, Err(ChatError::Timeout)), "{result:?}");
    assert_eq!(
        deltas.len(),
        1,
        "the delta before the stall was still streamed"
    );
}

#[tokio::test]
async fn server_error_then_success_is_retried_once() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::error(500, "upstream overloaded"),
        FakeReply::text("Second time lucky.", 3),
    ])
    .await;
    let (result, deltas) = complete(&chat(&fake), request("hi")).await;
    assert_eq!(result.unwrap().text, "Second time lucky.");
    assert_eq!(deltas.concat(), "Second time lucky.");
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(
        fake.requests()[0],
        fake.requests()[1],
        "the retry resends the same request"
    );
}

#[tokio::test]
async fn rate_limit_is_retried_but_retries_run_out() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::error(429, "slow down"),
        FakeReply::error(503, "still down"),
        FakeReply::text("never reached", 1),
    ])
    .await;
    let (result, _) = complete(&chat(&fake), request("hi")).await;
    match result {
        Err(ChatError::Status {
            status, message, ..
        }) => {
            assert_eq!(status, 503);
            assert_eq!(message, "still down");
        }
        other => panic!("expected the last 503, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.remaining(), 1);
}

/// A 429 with `Retry-After: 1` is retried no sooner than a second later (the policy alone would
/// wait about 100 ms); one whose hint lands past the whole-answer deadline is not retried at all.
#[tokio::test]
async fn rate_limit_retry_after_is_honoured_or_ends_the_request() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::error_retry_after(429, "slow down", 1),
        FakeReply::text("Waited politely.", 1),
    ])
    .await;
    let started = std::time::Instant::now();
    let (result, _) = complete(&chat(&fake), request("hi")).await;
    assert_eq!(result.unwrap().text, "Waited politely.");
    assert_eq!(fake.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let fake = FakeOpenAi::start(vec![
        FakeReply::error_retry_after(429, "come back in a minute", 60),
        FakeReply::text("never reached", 1),
    ])
    .await;
    let started = std::time::Instant::now();
    let (result, _) = complete(&chat(&fake), request("hi")).await;
    match result {
        Err(ChatError::Status {
            status: 429,
            retry_after,
            ..
        }) => assert_eq!(retry_after, Some(Duration::from_secs(60))),
        other => panic!("expected the 429, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1, "no retry past the deadline");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::error(400, "Invalid 'messages': empty"),
        FakeReply::text("never reached", 1),
    ])
    .await;
    let (result, _) = complete(&chat(&fake), request("hi")).await;
    match result {
        Err(ChatError::Status {
            status, message, ..
        }) => {
            assert_eq!(status, 400);
            assert_eq!(message, "Invalid 'messages': empty");
        }
        other => panic!("expected 400, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_connection_dropped_before_any_text_is_retried() {
    // Role chunk, half a tool call, then the connection dies: nothing reached the caller, so
    // the retry is safe, and the half call must not leak into the result.
    let fake = FakeOpenAi::start(vec![
        FakeReply::tool_calls(vec![call("call_x", "half", r#"{"a":1}"#)], 3).drop_after(3),
        FakeReply::text("Fresh answer.", 2),
    ])
    .await;
    let (result, _) = complete(&chat(&fake), request("hi")).await;
    let done = result.unwrap();
    assert_eq!(done.text, "Fresh answer.");
    assert!(done.tool_calls.is_empty());
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_connection_dropped_after_text_is_not_retried() {
    // The caller already heard the first words; a retry would say them twice.
    let fake = FakeOpenAi::start(vec![
        FakeReply::text("Our opening hours are nine to five.", 4).drop_after(3),
        FakeReply::text("never reached", 1),
    ])
    .await;
    let (result, deltas) = complete(&chat(&fake), request("hours?")).await;
    assert!(matches!(result, Err(ChatError::Stream(_))), "{result:?}");
    assert_eq!(deltas.len(), 2);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn dropping_the_completion_closes_the_connection() {
    let fake = FakeOpenAi::start(vec![
        FakeReply::text("Let me think about that.", 3).stall_after(2),
    ])
    .await;
    let model = chat(&fake);
    let (tx, mut rx) = mpsc::channel(8);
    let completion = model.complete(request("hi"), tx);
    let reading = tokio::spawn(completion);
    assert!(matches!(rx.recv().await, Some(ChatEvent::TextDelta(_))));
    assert_eq!(fake.disconnects(), 0);
    // Barge-in: the turn is cancelled and its future dropped.
    reading.abort();
    fake.wait_for_disconnects(1).await;
    assert_eq!(fake.disconnects(), 1);
    assert_eq!(fake.streams_finished(), 0);
}

#[tokio::test]
async fn warm_opens_a_connection_to_the_server() {
    let fake = FakeOpenAi::start(vec![]).await;
    let model = chat(&fake);
    model.warm().await.unwrap();
    assert_eq!(fake.model_requests(), 1);
    assert_eq!(fake.recorded()[0].path, "/v1/models");
}

#[tokio::test]
async fn warm_against_a_closed_port_fails() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let cfg = LlmConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        ..LlmConfig::default()
    };
    let model = OpenAiChat::new(&cfg, None).unwrap();
    let error = model.warm().await.unwrap_err();
    assert!(error.reason().contains("warm-up failed"), "{error}");
    // A closed port may open later: worth retrying, not a configuration error.
    assert!(
        matches!(error, kav::providers::ProviderError::Retryable { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn prepare_warms_in_the_background() {
    let fake = FakeOpenAi::start(vec![]).await;
    let model = chat(&fake);
    model.prepare("CA123");
    // `prepare` returned without waiting; the warm-up request still arrives.
    while fake.model_requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(fake.model_requests(), 1);
}

#[tokio::test]
async fn text_before_tool_calls_is_streamed_and_the_calls_returned() {
    let calls = vec![call("call_7", "find_slots", r#"{"day":"monday"}"#)];
    let fake = FakeOpenAi::start(vec![
        FakeReply::tool_calls(calls.clone(), 3).with_text("Let me check.", 2),
    ])
    .await;
    let (result, deltas) = complete(&chat(&fake), request("monday?")).await;
    let done = result.unwrap();
    assert_eq!(deltas, vec!["Let me ", "check."]);
    assert_eq!(done.text, "Let me check.");
    assert_eq!(done.tool_calls, calls);
    assert_eq!(done.finish_reason, "tool_calls");
}
