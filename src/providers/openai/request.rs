//! Our `ChatRequest` as async-openai's typed Chat Completions request (streamed, tools as
//! functions).

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionTool, ChatCompletionTools,
    CreateChatCompletionRequest, FunctionCall, FunctionObject,
};

use crate::providers::{ChatMessage, ChatRequest, ToolSpec};

pub(super) fn build_request(model: &str, request: &ChatRequest) -> CreateChatCompletionRequest {
    let tools =
        (!request.tools.is_empty()).then(|| request.tools.iter().map(tool_to_openai).collect());
    #[allow(deprecated)]
    CreateChatCompletionRequest {
        model: model.to_string(),
        messages: request.messages.iter().map(message_to_openai).collect(),
        temperature: Some(request.temperature),
        // `max_tokens` rather than `max_completion_tokens`: every compatible server (vLLM,
        // llama.cpp, Ollama, Azure) understands it, and OpenAI's chat models still accept it.
        max_tokens: Some(request.max_tokens),
        tools,
        stream: Some(true),
        ..Default::default()
    }
}

fn tool_to_openai(tool: &ToolSpec) -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: tool.name.clone(),
            description: Some(tool.description.clone()),
            parameters: Some(tool.parameters.clone()),
            strict: None,
        },
    })
}

#[allow(deprecated)]
fn message_to_openai(message: &ChatMessage) -> ChatCompletionRequestMessage {
    match message {
        ChatMessage::System(text) => {
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(text.clone()),
                name: None,
            })
        }
        ChatMessage::User(text) => {
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
                content: ChatCompletionRequestUserMessageContent::Text(text.clone()),
                name: None,
            })
        }
        ChatMessage::Assistant { text, tool_calls } => {
            let tool_calls = (!tool_calls.is_empty()).then(|| {
                tool_calls
                    .iter()
                    .map(|call| {
                        ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                            id: call.id.clone(),
                            function: FunctionCall {
                                name: call.name.clone(),
                                arguments: call.arguments.clone(),
                            },
                        })
                    })
                    .collect()
            });
            // `content` may be omitted only when the message carries tool calls.
            let content = (!text.is_empty() || tool_calls.is_none())
                .then(|| ChatCompletionRequestAssistantMessageContent::Text(text.clone()));
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content,
                tool_calls,
                ..Default::default()
            })
        }
        ChatMessage::Tool { call_id, content } => {
            ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: ChatCompletionRequestToolMessageContent::Text(content.clone()),
                tool_call_id: call_id.clone(),
            })
        }
    }
}
