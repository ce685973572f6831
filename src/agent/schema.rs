//! Tool JSON schemas, derived from the argument types with schemars: the schema the model is shown
//! is exactly what the tool parses (a field's doc comment is its description, `Option` fields are
//! optional, `deny_unknown_fields` is `additionalProperties: false`). The customer tools
//! (`agent::tools`) and the staff tools (`staff::tools`) both build their lists here.

use schemars::JsonSchema;
use serde_json::Value;

use crate::providers::ToolSpec;

/// The JSON schema of `T` (draft-07, sub-schemas inlined, no `$schema` or `title`, `properties`
/// even when empty), as the `parameters` of a function tool.
pub fn schema_of<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(map) = schema.as_object_mut() {
        map.remove("title");
        // A struct without fields derives no `properties`; OpenAI-compatible servers that check
        // function schemas (strict mode, guided decoding) want the key on every object.
        if map.get("type").and_then(Value::as_str) == Some("object") {
            map.entry("properties")
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }
    schema
}

/// A tool whose arguments are `T`.
pub fn tool_spec<T: JsonSchema>(name: &str, description: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters: schema_of::<T>(),
    }
}
