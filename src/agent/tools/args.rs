//! The tools' argument types and the tool list given to the LLM, whose JSON schemas are derived
//! from those types ([`crate::agent::schema`]): what the model is shown is exactly what is parsed.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{BUSINESS_INFO, CANCEL, CREATE, FIND_SLOTS, LEADS_UPSERT, LIST, UPDATE, WHATSAPP_SEND};
use crate::agent::schema::tool_spec;
use crate::providers::ToolSpec;

/// The tool list given to the LLM; each schema is derived from the argument type the tool parses
/// ([`super::schema`]).
pub fn specs() -> Vec<ToolSpec> {
    vec![
        tool_spec::<FindSlotsArgs>(
            FIND_SLOTS,
            "Free appointment slots on a date or a date range (local dates YYYY-MM-DD), optionally for one room.",
        ),
        tool_spec::<CreateArgs>(
            CREATE,
            "Book an appointment. Call only after the customer confirmed the details.",
        ),
        tool_spec::<EmptyArgs>(LIST, "The customer's own upcoming appointments."),
        tool_spec::<UpdateArgs>(
            UPDATE,
            "Move one of the customer's appointments to another start time (and optionally room).",
        ),
        tool_spec::<CancelArgs>(CANCEL, "Cancel one of the customer's appointments."),
        tool_spec::<LeadArgs>(LEADS_UPSERT, "Save the customer's name, phone and notes."),
        tool_spec::<SendArgs>(WHATSAPP_SEND, "Send the customer a WhatsApp text message."),
        tool_spec::<InfoArgs>(
            BUSINESS_INFO,
            "Facts about the business: hours, prices, rooms, faq, or all.",
        ),
    ]
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FindSlotsArgs {
    /// YYYY-MM-DD
    pub(super) date: Option<String>,
    pub(super) from_date: Option<String>,
    pub(super) to_date: Option<String>,
    /// room name
    pub(super) resource: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// local start, e.g. 2026-11-24T10:00
    pub start_iso: String,
    pub resource: Option<String>,
    pub customer_name: String,
    pub customer_phone: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EmptyArgs {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateArgs {
    pub(super) appointment_id: String,
    pub(super) start_iso: String,
    pub(super) resource: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelArgs {
    pub(super) appointment_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LeadArgs {
    pub(super) name: Option<String>,
    pub(super) phone: Option<String>,
    pub(super) notes: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SendArgs {
    pub(super) text: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InfoArgs {
    pub(super) topic: Option<Topic>,
}

// What `business_info` returns: the business's documents of one kind, or all of them. (A plain
// comment: a doc comment would become the property's description in the schema.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum Topic {
    Hours,
    Prices,
    Rooms,
    Faq,
    #[default]
    All,
}

impl Topic {
    /// The document kind it selects (`None`: every kind).
    pub(super) fn kind(self) -> Option<&'static str> {
        match self {
            Topic::Hours => Some("hours"),
            Topic::Prices => Some("prices"),
            Topic::Rooms => Some("rooms"),
            Topic::Faq => Some("faq"),
            Topic::All => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::parse;
    use super::*;

    /// The tool list as it was written by hand before the schemas were derived: what the model
    /// was shown, and must still be shown in substance.
    fn hand_written() -> Vec<(&'static str, &'static str, Value)> {
        vec![
            (
                FIND_SLOTS,
                "Free appointment slots on a date or a date range (local dates YYYY-MM-DD), optionally for one room.",
                json!({"type":"object","additionalProperties":false,"properties":{
                    "date":{"type":"string","description":"YYYY-MM-DD"},
                    "from_date":{"type":"string"},"to_date":{"type":"string"},
                    "resource":{"type":"string","description":"room name"}}}),
            ),
            (
                CREATE,
                "Book an appointment. Call only after the customer confirmed the details.",
                json!({"type":"object","additionalProperties":false,"required":["start_iso","customer_name"],"properties":{
                    "start_iso":{"type":"string","description":"local start, e.g. 2026-11-24T10:00"},
                    "resource":{"type":"string"},"customer_name":{"type":"string"},
                    "customer_phone":{"type":"string"}}}),
            ),
            (
                LIST,
                "The customer's own upcoming appointments.",
                json!({"type":"object","additionalProperties":false,"properties":{}}),
            ),
            (
                UPDATE,
                "Move one of the customer's appointments to another start time (and optionally room).",
                json!({"type":"object","additionalProperties":false,"required":["appointment_id","start_iso"],"properties":{
                    "appointment_id":{"type":"string"},"start_iso":{"type":"string"},"resource":{"type":"string"}}}),
            ),
            (
                CANCEL,
                "Cancel one of the customer's appointments.",
                json!({"type":"object","additionalProperties":false,"required":["appointment_id"],"properties":{
                    "appointment_id":{"type":"string"}}}),
            ),
            (
                LEADS_UPSERT,
                "Save the customer's name, phone and notes.",
                json!({"type":"object","additionalProperties":false,"properties":{
                    "name":{"type":"string"},"phone":{"type":"string"},"notes":{"type":"string"}}}),
            ),
            (
                WHATSAPP_SEND,
                "Send the customer a WhatsApp text message.",
                json!({"type":"object","additionalProperties":false,"required":["text"],"properties":{
                    "text":{"type":"string"}}}),
            ),
            (
                BUSINESS_INFO,
                "Facts about the business: hours, prices, rooms, faq, or all.",
                json!({"type":"object","additionalProperties":false,"properties":{
                    "topic":{"type":"string","enum":["hours","prices","rooms","faq","all"]}}}),
            ),
        ]
    }

    /// The JSON types a property schema allows, and its enum values, looking through the
    /// `anyOf`/`oneOf` that an optional enum becomes.
    fn types_and_values(schema: &Value) -> (Vec<String>, Vec<Value>) {
        let mut types = Vec::new();
        let mut values = Vec::new();
        let mut stack = vec![schema];
        while let Some(s) = stack.pop() {
            match &s["type"] {
                Value::String(t) => types.push(t.clone()),
                Value::Array(ts) => {
                    types.extend(ts.iter().filter_map(|t| t.as_str().map(String::from)))
                }
                _ => {}
            }
            if let Some(e) = s["enum"].as_array() {
                values.extend(e.iter().filter(|v| !v.is_null()).cloned());
            }
            if let Some(c) = s["const"].as_str() {
                values.push(json!(c));
            }
            for key in ["anyOf", "oneOf"] {
                stack.extend(s[key].as_array().into_iter().flatten());
            }
        }
        (types, values)
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    }

    fn required(v: &Value) -> Vec<String> {
        let mut r: Vec<String> = v["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect();
        r.sort();
        r
    }

    #[test]
    fn derived_tool_list_says_what_the_hand_written_one_said() {
        let derived = specs();
        let expected = hand_written();
        let names = |n: Vec<&str>| n.join(",");
        assert_eq!(
            names(derived.iter().map(|s| s.name.as_str()).collect()),
            names(expected.iter().map(|(n, _, _)| *n).collect())
        );
        for (spec, (name, description, old)) in derived.iter().zip(&expected) {
            let new = &spec.parameters;
            assert_eq!(spec.description, *description, "{name}");
            assert_eq!(new["type"], "object", "{name}: {new}");
            assert_eq!(new["additionalProperties"], false, "{name}: {new}");
            assert!(
                new["properties"].is_object(),
                "{name} has properties: {new}"
            );
            assert!(
                !new.to_string().contains("$ref"),
                "{name} is inlined: {new}"
            );
            assert_eq!(keys(&new["properties"]), keys(&old["properties"]), "{name}");
            assert_eq!(required(new), required(old), "{name}");
            for (field, was) in old["properties"].as_object().unwrap() {
                let now = &new["properties"][field];
                let (types, values) = types_and_values(now);
                let want = was["type"].as_str().unwrap();
                assert!(types.iter().any(|t| t == want), "{name}.{field}: {now}");
                // A required field may not be null; an optional one may be left out or null.
                let optional = !required(old).contains(field);
                assert_eq!(
                    types.iter().any(|t| t == "null"),
                    optional,
                    "{name}.{field}: {now}"
                );
                assert_eq!(
                    values,
                    was["enum"].as_array().cloned().unwrap_or_default(),
                    "{name}.{field}: {now}"
                );
                assert_eq!(now["description"], was["description"], "{name}.{field}");
            }
        }
    }

    #[test]
    fn arguments_outside_the_schema_are_bad_arguments_that_name_the_choices() {
        let err = parse::<InfoArgs>(r#"{"topic":"weather"}"#).err().unwrap();
        assert_eq!(err["error"], "bad_arguments");
        let reason = err["reason"].as_str().unwrap();
        for topic in ["hours", "prices", "rooms", "faq", "all"] {
            assert!(reason.contains(topic), "{reason}");
        }
        let ok: InfoArgs = parse(r#"{"topic":"faq"}"#).unwrap();
        assert_eq!(ok.topic.and_then(Topic::kind), Some("faq"));
        let none: InfoArgs = parse("").unwrap();
        assert_eq!(none.topic.unwrap_or_default().kind(), None);
        assert!(parse::<CreateArgs>(r#"{"start_iso":"2026-11-24T10:00"}"#).is_err());
        assert!(parse::<EmptyArgs>(r#"{"x":1}"#).is_err());
    }
}
