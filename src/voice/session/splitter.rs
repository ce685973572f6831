//! Sentence cutting for streamed agent text, so speech starts before the reply is complete: a
//! sentence ends at `.`, `!`, `?`, `;` or `:` followed by whitespace (so decimals stay whole), at
//! a newline, or at a comma once a clause is long.

/// Cuts streamed agent text into sentences so speech can start before the reply is complete.
#[derive(Debug, Default)]
pub struct SentenceSplitter {
    pending: String,
}

impl SentenceSplitter {
    /// Long clauses are cut at a comma once this many bytes are pending.
    const COMMA_SPLIT_BYTES: usize = 60;

    pub fn push(&mut self, text: &str) {
        self.pending.push_str(text);
    }

    pub fn is_empty(&self) -> bool {
        self.pending.trim().is_empty()
    }

    /// The next complete sentence; with `flush`, whatever is left.
    pub fn next_sentence(&mut self, flush: bool) -> Option<String> {
        let bytes = self.pending.as_bytes();
        let mut cut = None;
        for (i, &b) in bytes.iter().enumerate() {
            let next_is_space = bytes.get(i + 1).is_some_and(|n| n.is_ascii_whitespace());
            let terminal = matches!(b, b'.' | b'!' | b'?' | b';' | b':') && next_is_space;
            let comma = b == b',' && next_is_space && i >= Self::COMMA_SPLIT_BYTES;
            if terminal || comma || b == b'\n' {
                cut = Some(i + 1);
                break;
            }
        }
        let cut = match cut {
            Some(cut) => cut,
            None if flush => self.pending.len(),
            None => return None,
        };
        let sentence = self.pending[..cut].trim().to_string();
        self.pending.drain(..cut);
        if sentence.is_empty() {
            return if self.pending.trim().is_empty() {
                None
            } else {
                self.next_sentence(flush)
            };
        }
        Some(sentence)
    }
}
