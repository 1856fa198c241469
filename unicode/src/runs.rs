//! The tables' two shapes, decoded on first use.
//!
//! A table is stored as postcard varints of the gaps between code points
//! (most gaps fit a byte, and gzip packs them well: the browser package
//! ships these bytes) and decoded once into sorted arrays that a lookup
//! searches in a dozen steps.

use std::sync::OnceLock;

/// Every code point's value as runs: a run starts at a code point and
/// holds one value until the next run starts.
pub(crate) struct Runs {
    starts: &'static [u8],
    values: &'static [u8],
    decoded: OnceLock<Decoded>,
}

struct Decoded {
    /// Each run as `start << 8 | value`, by start.
    runs: Vec<u32>,
    /// The values of the ASCII characters, read from `runs`: most lookups
    /// are of ASCII text (every character of an email is checked), and an
    /// index is several times faster than a search.
    ascii: [u8; 128],
}

impl Decoded {
    fn search(runs: &[u32], code: u32) -> u8 {
        match runs.partition_point(|run| run >> 8 <= code) {
            0 => 0,
            // The low byte of a run is its value.
            i => (runs[i - 1] & 0xFF) as u8,
        }
    }
}

impl Runs {
    /// Runs from the gaps between their starts (postcard `Vec<u32>`, the
    /// first from 0) and one value byte per run.
    pub(crate) const fn new(starts: &'static [u8], values: &'static [u8]) -> Self {
        Self {
            starts,
            values,
            decoded: OnceLock::new(),
        }
    }

    /// The value of the run that holds `c`.
    pub(crate) fn get(&self, c: char) -> u8 {
        let decoded = self.decoded.get_or_init(|| {
            let mut start = 0u32;
            let runs: Vec<u32> = gaps(self.starts)
                .iter()
                .zip(self.values)
                .map(|(gap, value)| {
                    start = start.saturating_add(*gap);
                    start << 8 | u32::from(*value)
                })
                .collect();
            let mut ascii = [0; 128];
            for (code, value) in (0..).zip(&mut ascii) {
                *value = Decoded::search(&runs, code);
            }
            Decoded { runs, ascii }
        });
        let code = u32::from(c);
        match decoded.ascii.get(code as usize) {
            Some(value) => *value,
            None => Decoded::search(&decoded.runs, code),
        }
    }
}

/// The gaps of a generated table. The tables are constants checked by the
/// tests, so a failure to decode is a build that cannot pass them; an
/// empty table keeps the lookups panic-free regardless.
fn gaps(bytes: &[u8]) -> Vec<u32> {
    postcard::from_bytes(bytes).unwrap_or_default()
}

/// The UTS 46 mappings: characters mapped to one character, and those
/// mapped to a string.
pub(crate) struct Mappings {
    /// `from << 32 | to`, by `from`.
    chars: Vec<u64>,
    /// `(from, end of its text in TEXT)`, by `from`.
    texts: Vec<(u32, u32)>,
    text: &'static str,
}

impl Mappings {
    /// Decodes the tables: the mapped characters' gaps (postcard
    /// `Vec<u32>`) with the differences between consecutive targets
    /// (postcard `Vec<i32>`, zigzag varints); the characters mapped to a
    /// string by their gaps, the length of each string in bytes, and the
    /// strings one after another.
    pub(crate) fn decode(
        chars: &'static [u8],
        targets: &'static [u8],
        text_chars: &'static [u8],
        text_lengths: &'static [u8],
        text: &'static str,
    ) -> Self {
        let (mut from, mut to) = (0u32, 0i64);
        let steps: Vec<i32> = postcard::from_bytes(targets).unwrap_or_default();
        let chars = gaps(chars)
            .into_iter()
            .zip(steps)
            .map(|(gap, step)| {
                from = from.saturating_add(gap);
                to += i64::from(step);
                u64::from(from) << 32 | (to as u64 & 0xFFFF_FFFF)
            })
            .collect();
        let (mut from, mut end) = (0u32, 0u32);
        let texts = gaps(text_chars)
            .into_iter()
            .zip(text_lengths)
            .map(|(gap, length)| {
                from = from.saturating_add(gap);
                end += u32::from(*length);
                (from, end)
            })
            .collect();
        Self { chars, texts, text }
    }

    /// What `c` is mapped to: a character, a string, or `None` when the
    /// tables do not map it.
    pub(crate) fn get(&self, c: char) -> Option<Result<char, &'static str>> {
        let code = u64::from(u32::from(c));
        if let Ok(i) = self.chars.binary_search_by_key(&code, |entry| entry >> 32) {
            return char::from_u32(self.chars[i] as u32).map(Ok);
        }
        let i = self
            .texts
            .binary_search_by_key(&u32::from(c), |&(from, _)| from)
            .ok()?;
        let start = i.checked_sub(1).map_or(0, |before| self.texts[before].1);
        let text = self.text.get(start as usize..self.texts[i].1 as usize)?;
        Some(Err(text))
    }
}
