//! Full Unicode case folding (the `C` and `F` mappings of CaseFolding.txt,
//! without the Turkic ones), for the email key: the same folding as
//! ICU4X's `CaseMapper::fold_string`, from a table generated from ICU4X's
//! own data. ICU4X's case mapper carries data and code for every case
//! operation (titlecasing, special casing in context, …), which cost the
//! browser package 9.4 KB gzipped for this one use; the table is 208 runs of
//! characters that fold by one offset and the 105 characters that fold to
//! more than one.
//!
//! `table.rs` is generated, never edited: a unit test below rebuilds it
//! from ICU4X (a dev-dependency) and fails when the file differs, and
//! another holds the folding of every character to ICU4X's.
//! `SPKEY_BLESS=1 cargo test -p spkey-unicode casefold` rewrites it after an
//! ICU4X update.

mod table;

use table::{MULTI, RUNS, Run};

/// `text`, case-folded (full folding, no Turkic mappings), as ICU4X's
/// `CaseMapper::fold_string` folds it.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        fold_char(c, &mut out);
    }
    out
}

/// Appends the folding of `c` to `out`.
fn fold_char(c: char, out: &mut String) {
    // ASCII folds to its lowercase, and no folding of several characters
    // starts in ASCII: most addresses never reach the tables.
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    let code = u32::from(c);
    if let Ok(i) = MULTI.binary_search_by_key(&code, |&(from, _)| from) {
        out.push_str(MULTI[i].1);
        return;
    }
    // The last run starting at or before `c`: runs never overlap.
    let folded = match RUNS.partition_point(|run| run.start <= code) {
        0 => None,
        i => RUNS[i - 1].apply(code),
    };
    // Every result is a character (the exhaustive test meets each one);
    // `c` itself is the fallback that cannot panic.
    out.push(folded.and_then(char::from_u32).unwrap_or(c));
}

impl Run {
    /// The folding of `code` if this run holds it.
    fn apply(&self, code: u32) -> Option<u32> {
        let offset = code - self.start;
        let stride = u32::from(self.stride);
        (offset.is_multiple_of(stride) && offset / stride < u32::from(self.len))
            .then(|| code.checked_add_signed(self.delta))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icu_casemap::CaseMapper;
    use std::fmt::Write as _;

    /// The table's source text, from ICU4X's folding of every character.
    fn generate() -> String {
        let mapper = CaseMapper::new();
        let (mut single, mut multi) = (Vec::new(), Vec::new());
        for c in crate::tests::chars() {
            let folded = mapper.fold_string(c.encode_utf8(&mut [0; 4])).into_owned();
            let mut chars = folded.chars();
            match (chars.next(), chars.next()) {
                (Some(f), None) if f == c => {}
                (Some(f), None) => single.push((
                    u32::from(c),
                    i64::from(u32::from(f)) - i64::from(u32::from(c)),
                )),
                _ => multi.push((u32::from(c), folded)),
            }
        }
        // Greedy runs: from each unplaced mapping, the longer of the runs
        // of one offset with a stride of 1 (A–Z) or 2 (Ā, ā, Ă, …).
        let mut runs = Vec::new();
        let mut i = 0;
        while i < single.len() {
            let (start, delta) = single[i];
            let mut best = (1, 1);
            for stride in [1, 2] {
                let mut len = 1;
                while len < usize::from(u8::MAX)
                    && single.get(i + len) == Some(&(start + stride * len as u32, delta))
                {
                    len += 1;
                }
                if len > best.0 {
                    best = (len, stride);
                }
            }
            runs.push((start, best.0, best.1, delta));
            i += best.0;
        }
        let mut text = String::from(
            "// Generated from ICU4X's case folding by casefold::tests::the_table_is_generated_from_icu4x;\n\
             // do not edit (`SPKEY_BLESS=1 cargo test -p spkey-unicode casefold` rewrites it).\n\n\
             /// `len` characters from `start`, every `stride`th, each folding to itself plus `delta`.\n\
             pub(super) struct Run {\n    pub start: u32,\n    pub len: u8,\n    pub stride: u8,\n    pub delta: i32,\n}\n\n",
        );
        writeln!(text, "/// The single-character foldings, by start.\n#[rustfmt::skip]\npub(super) static RUNS: [Run; {}] = [", runs.len()).unwrap();
        for (start, len, stride, delta) in runs {
            writeln!(
                text,
                "    Run {{ start: 0x{start:04X}, len: {len}, stride: {stride}, delta: {delta} }},"
            )
            .unwrap();
        }
        writeln!(text, "];\n\n/// The characters that fold to more than one, by code.\n#[rustfmt::skip]\npub(super) static MULTI: [(u32, &str); {}] = [", multi.len()).unwrap();
        for (code, folded) in multi {
            writeln!(text, "    (0x{code:04X}, \"{}\"),", folded.escape_unicode()).unwrap();
        }
        text.push_str("];\n");
        text
    }

    #[test]
    fn the_table_is_generated_from_icu4x() {
        crate::tests::assert_generated("src/casefold/table.rs", &generate());
    }

    #[test]
    fn every_character_folds_as_icu4x_folds_it() {
        let mapper = CaseMapper::new();
        let (n, some) = crate::tests::differences(
            |c| fold(c.encode_utf8(&mut [0; 4])),
            |c| mapper.fold_string(c.encode_utf8(&mut [0; 4])).into_owned(),
        );
        assert!(n == 0, "{n} differ: {some:?}");
    }

    /// Folding has no context (unlike lowercasing's final sigma): a string
    /// folds as its characters do, here against ICU4X on mixed strings.
    #[test]
    fn strings_fold_as_icu4x_folds_them() {
        let mapper = CaseMapper::new();
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet: Vec<char> = "AaßẞΣσςΐİıǅﬃŉΩΆ\u{345}\u{301}ÅÉÑ\u{130}Ꭰꭰ𐐀𞤀ǰ\u{1E9E} .@-"
            .chars()
            .collect();
        for _ in 0..2_000 {
            let text: String = (0..rng.usize(0..12))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            assert_eq!(fold(&text), mapper.fold_string(&text), "{text:?}");
        }
    }
}
