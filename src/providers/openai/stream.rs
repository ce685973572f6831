//! Streamed `chat.completion.chunk`s, parsed leniently, and the assembly of tool calls from
//! their fragments.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::providers::ToolCall;

/// One `chat.completion.chunk`, parsed leniently: every field the client does not need is ignored
/// and every field it needs is optional, so vLLM / llama.cpp / Ollama / Azure chunks all parse
/// (Azure's first chunk has empty `choices` and `prompt_filter_results`).
#[derive(Debug, Deserialize)]
pub(super) struct StreamChunk {
    #[serde(default)]
    pub(super) choices: Vec<ChunkChoice>,
    /// Some servers report failures inside the stream instead of with an HTTP status.
    #[serde(default)]
    pub(super) error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkChoice {
    #[serde(default)]
    pub(super) index: u32,
    #[serde(default)]
    pub(super) delta: Option<ChunkDelta>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChunkDelta {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<ToolCallFragment>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolCallFragment {
    /// Which tool call this fragment belongs to. Some older servers leave it out.
    #[serde(default)]
    pub(super) index: Option<u32>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) function: Option<FunctionFragment>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionFragment {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) arguments: Option<String>,
}

/// Assembles tool calls from streamed fragments: keyed by `index`, `id` and `name` from the first
/// fragment that carries them, `arguments` concatenated in arrival order.
#[derive(Debug, Default)]
pub(super) struct ToolCallAssembler {
    calls: BTreeMap<u32, ToolCall>,
}

impl ToolCallAssembler {
    pub(super) fn add(&mut self, fragment: ToolCallFragment) {
        let index = fragment.index.unwrap_or_else(|| {
            // Without an index, a fragment with an id starts a new call; one without continues
            // the latest call.
            let last = self.calls.keys().next_back().copied();
            match (last, fragment.id.is_some()) {
                (None, _) => 0,
                (Some(last), true) => last + 1,
                (Some(last), false) => last,
            }
        });
        let call = self.calls.entry(index).or_insert_with(|| ToolCall {
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
        });
        if let Some(id) = fragment.id.filter(|id| !id.is_empty())
            && call.id.is_empty()
        {
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name.filter(|n| !n.is_empty())
                && call.name.is_empty()
            {
                call.name = name;
            }
            if let Some(arguments) = function.arguments {
                call.arguments.push_str(&arguments);
            }
        }
    }

    pub(super) fn finish(self) -> Vec<ToolCall> {
        self.calls.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(
        index: Option<u32>,
        id: Option<&str>,
        name: Option<&str>,
        args: &str,
    ) -> ToolCallFragment {
        ToolCallFragment {
            index,
            id: id.map(String::from),
            function: Some(FunctionFragment {
                name: name.map(String::from),
                arguments: Some(args.into()),
            }),
        }
    }

    #[test]
    fn assembler_keys_fragments_by_index_and_keeps_first_id_and_name() {
        let mut a = ToolCallAssembler::default();
        a.add(fragment(Some(0), Some("call_a"), Some("book"), ""));
        a.add(fragment(Some(1), Some("call_b"), Some("cancel"), "{\"x\""));
        a.add(fragment(Some(0), None, None, "{\"day\":"));
        a.add(fragment(Some(1), None, None, ":1}"));
        a.add(fragment(
            Some(0),
            Some("ignored"),
            Some("ignored"),
            "\"mon\"}",
        ));
        assert_eq!(
            a.finish(),
            vec![
                ToolCall {
                    id: "call_a".into(),
                    name: "book".into(),
                    arguments: "{\"day\":\"mon\"}".into()
                },
                ToolCall {
                    id: "call_b".into(),
                    name: "cancel".into(),
                    arguments: "{\"x\":1}".into()
                },
            ]
        );
    }

    #[test]
    fn assembler_without_index_starts_a_call_per_id() {
        let mut a = ToolCallAssembler::default();
        a.add(fragment(None, Some("c1"), Some("f"), "{}"));
        a.add(fragment(None, Some("c2"), Some("g"), "{\"a\""));
        a.add(fragment(None, None, None, ":2}"));
        let calls = a.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments, "{\"a\":2}");
    }
}
