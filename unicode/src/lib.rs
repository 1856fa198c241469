//! The Unicode data of spkey-store's email rule, in tables generated from
//! ICU4X's and held equal to ICU4X for every character.
//!
//! The rule needs NFC (ICU4X's normalizer, used as is), full case folding
//! ([`fold`]), a few general categories ([`category`]) and, through the
//! `idna` crate, UTS 46: its mapping ([`map_normalize`],
//! [`normalize_validate`]), bidi classes ([`bidi_class`]), joining types
//! ([`joining_type`]) and viramas ([`is_virama`]). ICU4X carries each of
//! these as a general-purpose code point trie with the code that reads
//! it, 30 KB gzipped in the browser package for UTS 46 alone; the rule
//! needs only lookups, which runs of code points answer: these tables
//! made the package 17.6 KB smaller (the README's "JavaScript" has the
//! builds measured).
//!
//! Every table is generated, never edited: `src/tables.rs` and
//! `src/casefold/table.rs` are rebuilt from ICU4X (a dev-dependency) by a
//! unit test that fails when a committed file differs, and others hold
//! every function here equal to ICU4X's for every character and for mixed
//! strings. `SPKEY_BLESS=1 cargo test -p spkey-unicode` rewrites both
//! files after an ICU4X update.
//!
//! The `idna` crate reaches these functions through `idna_adapter`, its
//! seam for choosing a Unicode back end: the workspace patches that crate
//! with `unicode/idna_adapter`, a wrapper of this one.

mod casefold;
mod runs;
mod tables;
#[cfg(test)]
mod tests;

use std::str::Chars;
use std::sync::OnceLock;

use icu_normalizer::ComposingNormalizerBorrowed;

pub use casefold::fold;
use runs::{Mappings, Runs};

/// Bidi classes by their ICU4C numbers (`UCharDirection`), the numbers the
/// table holds and [`bidi_class`] returns.
pub mod bidi {
    /// Left_To_Right.
    pub const L: u8 = 0;
    /// Right_To_Left.
    pub const R: u8 = 1;
    /// European_Number.
    pub const EN: u8 = 2;
    /// European_Separator.
    pub const ES: u8 = 3;
    /// European_Terminator.
    pub const ET: u8 = 4;
    /// Arabic_Number.
    pub const AN: u8 = 5;
    /// Common_Separator.
    pub const CS: u8 = 6;
    /// Other_Neutral.
    pub const ON: u8 = 10;
    /// Arabic_Letter.
    pub const AL: u8 = 13;
    /// Nonspacing_Mark.
    pub const NSM: u8 = 17;
    /// Boundary_Neutral.
    pub const BN: u8 = 18;
}

/// Joining types by their ICU4C numbers (`UJoiningType`), the numbers the
/// table holds and [`joining_type`] returns.
pub mod joining {
    /// Non_Joining.
    pub const U: u8 = 0;
    /// Join_Causing.
    pub const C: u8 = 1;
    /// Dual_Joining.
    pub const D: u8 = 2;
    /// Left_Joining.
    pub const L: u8 = 3;
    /// Right_Joining.
    pub const R: u8 = 4;
    /// Transparent.
    pub const T: u8 = 5;
}

/// The general categories the email rule tells apart; every other
/// category is [`Category::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Category {
    /// Any category not named here: letters, numbers, punctuation, symbols.
    Other = 0,
    /// Cc.
    Control = 1,
    /// Cf: invisible characters.
    Format = 2,
    /// Co.
    PrivateUse = 3,
    /// Cn and Cs.
    Unassigned = 4,
    /// Zs, Zl and Zp.
    Space = 5,
    /// Mn, Mc and Me.
    Mark = 6,
}

impl Category {
    fn from_table(value: u8) -> Self {
        match value {
            1 => Self::Control,
            2 => Self::Format,
            3 => Self::PrivateUse,
            4 => Self::Unassigned,
            5 => Self::Space,
            6 => Self::Mark,
            _ => Self::Other,
        }
    }
}

/// The general category of `c`, as far as the email rule tells them apart.
pub fn category(c: char) -> Category {
    static RUNS: Runs = Runs::new(tables::CATEGORY_STARTS, tables::CATEGORY_VALUES);
    Category::from_table(RUNS.get(c))
}

/// The Bidi_Class of `c`, as its ICU4C number ([`bidi`]).
pub fn bidi_class(c: char) -> u8 {
    static RUNS: Runs = Runs::new(tables::BIDI_STARTS, tables::BIDI_VALUES);
    RUNS.get(c)
}

/// The Joining_Type of `c`, as its ICU4C number ([`joining`]).
pub fn joining_type(c: char) -> u8 {
    static RUNS: Runs = Runs::new(tables::JOINING_STARTS, tables::JOINING_VALUES);
    RUNS.get(c)
}

/// Whether `c`'s Canonical_Combining_Class is 9 (Virama), as ICU4X's UTS 46
/// mapper answers it.
pub fn is_virama(c: char) -> bool {
    static RUNS: Runs = Runs::new(tables::VIRAMA_STARTS, tables::VIRAMA_VALUES);
    RUNS.get(c) != 0
}

/// A character's status in the UTS 46 mapping table, as ICU4X applies it
/// (deviations valid, the STD3 rules left to the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Valid = 0,
    Ignored = 1,
    Disallowed = 2,
    Mapped = 3,
}

fn status(c: char) -> Status {
    static RUNS: Runs = Runs::new(tables::UTS46_STARTS, tables::UTS46_VALUES);
    match RUNS.get(c) {
        0 => Status::Valid,
        1 => Status::Ignored,
        3 => Status::Mapped,
        _ => Status::Disallowed,
    }
}

fn mappings() -> &'static Mappings {
    static MAPPINGS: OnceLock<Mappings> = OnceLock::new();
    MAPPINGS.get_or_init(|| {
        Mappings::decode(
            tables::MAPPED_CHARS,
            tables::MAPPED_TARGETS,
            tables::MAPPED_TEXT_CHARS,
            tables::MAPPED_TEXT_LENGTHS,
            tables::MAPPED_TEXT,
        )
    })
}

/// What one character becomes: nothing, a character or a string.
enum Mapping {
    Char(Option<char>),
    Text(Chars<'static>),
}

impl Iterator for Mapping {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        match self {
            Mapping::Char(c) => c.take(),
            Mapping::Text(text) => text.next(),
        }
    }
}

/// U+FFFD, which UTS 46 disallows: what a disallowed character becomes.
const REPLACEMENT: char = '\u{FFFD}';

fn map(c: char, ignored: Option<char>) -> Mapping {
    match status(c) {
        Status::Valid => Mapping::Char(Some(c)),
        Status::Ignored => Mapping::Char(ignored),
        Status::Disallowed => Mapping::Char(Some(REPLACEMENT)),
        // A mapped character missing from the mapping tables cannot be
        // (the exhaustive test meets every one); disallowing it is the
        // answer that cannot let a wrong domain through.
        Status::Mapped => match mappings().get(c) {
            Some(Ok(to)) => Mapping::Char(Some(to)),
            Some(Err(text)) => Mapping::Text(text.chars()),
            None => Mapping::Char(Some(REPLACEMENT)),
        },
    }
}

/// The Map and Normalize steps of UTS 46 processing, lazily, as ICU4X's
/// `Uts46Mapper::map_normalize`: ignored characters dropped, mapped ones
/// mapped, disallowed ones replaced by U+FFFD, deviations kept, the STD3
/// rules left to the caller, the result in NFC.
pub fn map_normalize<'a, I: Iterator<Item = char> + 'a>(
    chars: I,
) -> impl Iterator<Item = char> + 'a {
    ComposingNormalizerBorrowed::new_nfc().normalize_iter(chars.flat_map(|c| map(c, None)))
}

/// The NFC and status checks of UTS 46's Validity Criteria, lazily, as
/// ICU4X's `Uts46Mapper::normalize_validate`: as [`map_normalize`] but
/// ignored characters become U+FFFD; a label is valid when the output
/// equals the input.
pub fn normalize_validate<'a, I: Iterator<Item = char> + 'a>(
    chars: I,
) -> impl Iterator<Item = char> + 'a {
    ComposingNormalizerBorrowed::new_nfc()
        .normalize_iter(chars.flat_map(|c| map(c, Some(REPLACEMENT))))
}
