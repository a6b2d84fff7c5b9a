//! Transcript chunking: a message longer than the chunk size is cut at the
//! coarsest boundary that fits (paragraph, then line, then sentence, then
//! character), and neighbouring pieces are packed back together up to the size.
//! Sizes count `char`s, so a cut never falls inside a UTF-8 sequence, and the
//! chunks concatenate back to the exact original text.

/// Splits `text` into chunks of at most `max` characters (`max` ≥ 1).
/// Empty text gives no chunks.
pub fn chunk(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    if !text.is_empty() {
        pack(text, 0, max, &mut out);
    }
    out
}

fn count(s: &str) -> usize {
    s.chars().count()
}

fn pack(text: &str, level: u8, max: usize, out: &mut Vec<String>) {
    if count(text) <= max {
        out.push(text.to_string());
        return;
    }
    let parts = match level {
        0 => text.split_inclusive("\n\n").collect::<Vec<_>>(),
        1 => text.split_inclusive('\n').collect(),
        2 => sentences(text),
        _ => {
            by_chars(text, max, out);
            return;
        }
    };
    if parts.len() <= 1 {
        pack(text, level + 1, max, out);
        return;
    }
    let mut cur = String::new();
    let mut cur_len = 0;
    for p in parts {
        let n = count(p);
        if n > max {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            pack(p, level + 1, max, out);
            continue;
        }
        if cur_len + n > max {
            out.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        cur.push_str(p);
        cur_len += n;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
}

/// Pieces that each end after sentence punctuation and the whitespace after it.
fn sentences(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut prev_end_punct = false;
    for (i, c) in text.char_indices() {
        if prev_end_punct && c.is_whitespace() {
            let end = i + c.len_utf8();
            parts.push(&text[start..end]);
            start = end;
        }
        prev_end_punct = matches!(c, '.' | '!' | '?' | '。' | '！' | '？');
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}

fn by_chars(text: &str, max: usize, out: &mut Vec<String>) {
    let mut cur = String::new();
    let mut n = 0;
    for c in text.chars() {
        if n == max {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
        cur.push(c);
        n += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, max: usize, want: &[&str]) {
        let got = chunk(text, max);
        assert_eq!(got, want, "text {text:?} max {max}");
        assert_eq!(got.concat(), text);
        assert!(got.iter().all(|c| count(c) <= max && !c.is_empty()));
    }

    #[test]
    fn table() {
        check("", 10, &[]);
        check("short", 10, &["short"]);
        check("exactly10!", 10, &["exactly10!"]);
        // Paragraphs first, packed while they fit.
        check("aaaa\n\nbbbb\n\ncc", 12, &["aaaa\n\nbbbb\n\n", "cc"]);
        // A paragraph too long falls back to lines; the next paragraph starts a
        // new chunk (coarser boundaries are preferred).
        check(
            "l1 xx\nl2 yy\nl3\n\nend",
            8,
            &["l1 xx\n", "l2 yy\n", "l3\n\n", "end"],
        );
        // A line too long falls back to sentences.
        check(
            "One two. Three four! Five?",
            12,
            &["One two. ", "Three four! ", "Five?"],
        );
        // No boundary at all: characters.
        check("abcdefghij", 4, &["abcd", "efgh", "ij"]);
        // Decimal points are not sentence ends.
        check("pi is 3.14159 ok", 8, &["pi is 3.", "14159 ok"]);
    }

    #[test]
    fn never_splits_inside_a_utf8_char() {
        let text = "é😀ü".repeat(50) + "\n\n" + &"日本語。".repeat(30);
        for max in [1, 2, 3, 7, 50, 200] {
            let got = chunk(&text, max);
            assert_eq!(got.concat(), text, "max {max}");
            assert!(got.iter().all(|c| count(c) <= max), "max {max}");
        }
        assert_eq!(chunk("😀😀😀", 2), vec!["😀😀", "😀"]);
    }

    #[test]
    fn long_mixed_text_round_trips() {
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!(
                "Paragraph {i}. It has a sentence! And another one?\n"
            ));
            if i % 7 == 0 {
                text.push('\n');
            }
        }
        let got = chunk(&text, 200);
        assert_eq!(got.concat(), text);
        assert!(got.iter().all(|c| count(c) <= 200));
        // Packing keeps chunks at least half full on average.
        assert!(got.len() * 100 < text.len(), "{} chunks", got.len());
    }
}
