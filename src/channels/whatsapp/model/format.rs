//! Reply formatting: the agent's markdown turned into WhatsApp's own markup, and long replies
//! split into parts under the provider's limit at paragraph, line or word boundaries.

/// Converts the agent's markdown to WhatsApp formatting: `**b**`/`__b__` → `*b*`, `*i*` → `_i_`,
/// `~~s~~` → `~s~`, headings → bold lines, `*`/`+` bullets → `-`, links `[t](u)` → `t (u)`.
pub fn markdown_to_whatsapp(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut in_code = false;
    for (i, line) in markdown.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            out.push_str(line);
            continue;
        }
        if in_code {
            out.push_str(line);
            continue;
        }
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(heading) = strip_heading(trimmed) {
            out.push('*');
            out.push_str(&inline_markdown(heading));
            out.push('*');
            continue;
        }
        out.push_str(indent);
        let rest = if let Some(item) = trimmed
            .strip_prefix("* ")
            .or_else(|| trimmed.strip_prefix("+ "))
        {
            out.push_str("- ");
            item
        } else {
            trimmed
        };
        out.push_str(&inline_markdown(rest));
    }
    out
}

fn strip_heading(line: &str) -> Option<&str> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if (1..=6).contains(&hashes) {
        line[hashes..].strip_prefix(' ').map(str::trim)
    } else {
        None
    }
}

fn inline_markdown(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match (c, next) {
            ('*', Some('*')) | ('_', Some('_')) => {
                out.push('*');
                i += 2;
            }
            ('~', Some('~')) => {
                out.push('~');
                i += 2;
            }
            ('*', _) => {
                out.push('_');
                i += 1;
            }
            ('[', _) => {
                // [text](url) → text (url)
                if let Some((label, url, len)) = parse_link(&chars[i..]) {
                    out.push_str(&label);
                    out.push_str(" (");
                    out.push_str(&url);
                    out.push(')');
                    i += len;
                } else {
                    out.push(c);
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn parse_link(chars: &[char]) -> Option<(String, String, usize)> {
    let close = chars.iter().position(|c| *c == ']')?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = chars[close + 2..].iter().position(|c| *c == ')')? + close + 2;
    let label: String = chars[1..close].iter().collect();
    let url: String = chars[close + 2..end].iter().collect();
    Some((label, url, end + 1))
}

/// Splits `text` into parts of at most `max_chars` characters, preferring paragraph, then line,
/// then sentence, then word boundaries; a single over-long word is cut hard.
pub fn split_message(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        if rest.chars().count() <= max_chars {
            parts.push(rest.to_string());
            break;
        }
        // Byte index just past the `max_chars`-th character.
        let limit = rest
            .char_indices()
            .nth(max_chars)
            .map(|(b, _)| b)
            .unwrap_or(rest.len());
        let window = &rest[..limit];
        let cut = ["\n\n", "\n", ". ", "! ", "? ", " "]
            .iter()
            .find_map(|sep| {
                window
                    .rfind(sep)
                    .filter(|&at| at > 0)
                    .map(|at| at + sep.len())
            })
            .unwrap_or(limit);
        parts.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    parts
}
