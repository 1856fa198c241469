//! `tables.rs` generated from ICU4X, and every function held equal to
//! ICU4X's for every character and for mixed strings.

use std::fmt::Write as _;

use icu_collections::codepointtrie::TrieValue;
use icu_normalizer::uts46::Uts46MapperBorrowed;
use icu_properties::CodePointMapData;
use icu_properties::props::{BidiClass, GeneralCategory, JoiningType};

use super::*;

/// Every character, in order.
pub(crate) fn chars() -> impl Iterator<Item = char> {
    (0..=u32::from(char::MAX)).filter_map(char::from_u32)
}

fn icu_map_normalize(text: &str) -> String {
    Uts46MapperBorrowed::new()
        .map_normalize(text.chars())
        .collect()
}

fn icu_normalize_validate(text: &str) -> String {
    Uts46MapperBorrowed::new()
        .normalize_validate(text.chars())
        .collect()
}

fn icu_category(c: char) -> Category {
    match CodePointMapData::<GeneralCategory>::new().get(c) {
        GeneralCategory::Control => Category::Control,
        GeneralCategory::Format => Category::Format,
        GeneralCategory::PrivateUse => Category::PrivateUse,
        GeneralCategory::Unassigned | GeneralCategory::Surrogate => Category::Unassigned,
        GeneralCategory::SpaceSeparator
        | GeneralCategory::LineSeparator
        | GeneralCategory::ParagraphSeparator => Category::Space,
        GeneralCategory::NonspacingMark
        | GeneralCategory::SpacingMark
        | GeneralCategory::EnclosingMark => Category::Mark,
        _ => Category::Other,
    }
}

fn icu_bidi_class(c: char) -> u8 {
    icu4c(CodePointMapData::<BidiClass>::new().get(c))
}

fn icu_joining_type(c: char) -> u8 {
    icu4c(CodePointMapData::<JoiningType>::new().get(c))
}

/// The ICU4C number of a property value.
fn icu4c(value: impl TrieValue) -> u8 {
    u8::try_from(value.to_u32()).expect("bidi classes and joining types are below 256")
}

/// Postcard's encoding of `values`: the form `runs` decodes.
fn postcard<T: serde::Serialize>(values: &[T]) -> Vec<u8> {
    postcard::to_allocvec(values).expect("a Vec always serializes")
}

/// The runs of `value` over every character: the gaps between their starts
/// and their values.
fn runs(mut value: impl FnMut(char) -> u8) -> (Vec<u8>, Vec<u8>) {
    let (mut gaps, mut values, mut last) = (Vec::new(), Vec::new(), 0);
    for c in chars() {
        let v = value(c);
        if values.last() != Some(&v) {
            gaps.push(u32::from(c) - last);
            last = u32::from(c);
            values.push(v);
        }
    }
    (postcard(&gaps), values)
}

/// A byte string literal, wrapped; spaces are escaped because a wrapped
/// line's leading whitespace is not part of the literal.
fn bytes_literal(bytes: &[u8]) -> String {
    let mut out = String::from("b\"\\\n");
    let mut line = 0;
    for &b in bytes {
        let piece = if b.is_ascii_alphanumeric() {
            char::from(b).to_string()
        } else {
            format!("\\x{b:02X}")
        };
        line += piece.len();
        out.push_str(&piece);
        if line >= 96 {
            out.push_str("\\\n");
            line = 0;
        }
    }
    out.push('"');
    out
}

fn str_literal(text: &str) -> String {
    let mut out = String::from("\"\\\n");
    let mut line = 0;
    for c in text.chars() {
        let piece = if c.is_ascii_alphanumeric() {
            c.to_string()
        } else {
            format!("\\u{{{:X}}}", u32::from(c))
        };
        line += piece.len();
        out.push_str(&piece);
        if line >= 96 {
            out.push_str("\\\n");
            line = 0;
        }
    }
    out.push('"');
    out
}

/// `tables.rs`, from ICU4X's data.
fn generate() -> String {
    let mapper = Uts46MapperBorrowed::new();
    let mut statuses = Vec::new();
    let (mut mapped_chars, mut targets) = (Vec::new(), Vec::new());
    let (mut text_chars, mut text_lengths, mut text) = (Vec::new(), Vec::new(), String::new());
    let (mut last_char, mut last_target, mut last_text) = (0, 0i64, 0);
    for c in chars() {
        let to: String = mapper.map_normalize([c].into_iter()).collect();
        let mut to_chars = to.chars();
        let status = match (to_chars.next(), to_chars.next()) {
            (Some(only), None) if only == c => Status::Valid,
            (None, _) => Status::Ignored,
            (Some(REPLACEMENT), None) => Status::Disallowed,
            (Some(only), None) => {
                mapped_chars.push(u32::from(c) - last_char);
                last_char = u32::from(c);
                let target = i64::from(u32::from(only));
                targets.push(
                    i32::try_from(target - last_target).expect("code points differ by < 2^21"),
                );
                last_target = target;
                Status::Mapped
            }
            _ => {
                text_chars.push(u32::from(c) - last_text);
                last_text = u32::from(c);
                text_lengths.push(u8::try_from(to.len()).expect("mappings are short"));
                text.push_str(&to);
                Status::Mapped
            }
        };
        statuses.push(status as u8);
    }
    let mut statuses = statuses.into_iter();
    let tables = [
        (
            "UTS46",
            runs(|_| statuses.next().expect("one status per character")),
        ),
        ("CATEGORY", runs(|c| icu_category(c) as u8)),
        ("BIDI", runs(icu_bidi_class)),
        ("JOINING", runs(icu_joining_type)),
        ("VIRAMA", runs(|c| u8::from(mapper.is_virama(c)))),
    ];
    let mut out = String::from(
        "// Generated from ICU4X's data by tests::the_tables_are_generated_from_icu4x;\n\
         // do not edit (`SPKEY_BLESS=1 cargo test -p spkey-unicode` rewrites it).\n\
         // Each table of runs: the gaps between their starts (postcard varints)\n\
         // and one value per run (runs.rs).\n",
    );
    for (name, (gaps, values)) in tables {
        writeln!(
            out,
            "\n#[rustfmt::skip]\npub(crate) static {name}_STARTS: &[u8] = {};\n\
             #[rustfmt::skip]\npub(crate) static {name}_VALUES: &[u8] = {};",
            bytes_literal(&gaps),
            bytes_literal(&values)
        )
        .expect("writing to a String");
    }
    writeln!(
        out,
        "\n// The UTS 46 mappings (runs.rs, `Mappings::decode`).\n\
         #[rustfmt::skip]\npub(crate) static MAPPED_CHARS: &[u8] = {};\n\
         #[rustfmt::skip]\npub(crate) static MAPPED_TARGETS: &[u8] = {};\n\
         #[rustfmt::skip]\npub(crate) static MAPPED_TEXT_CHARS: &[u8] = {};\n\
         #[rustfmt::skip]\npub(crate) static MAPPED_TEXT_LENGTHS: &[u8] = {};\n\
         #[rustfmt::skip]\npub(crate) static MAPPED_TEXT: &str = {};",
        bytes_literal(&postcard(&mapped_chars)),
        bytes_literal(&postcard(&targets)),
        bytes_literal(&postcard(&text_chars)),
        bytes_literal(&text_lengths),
        str_literal(&text)
    )
    .expect("writing to a String");
    out
}

/// Fails unless the committed generated file at `path` (from the crate's
/// root) is `generated`; `SPKEY_BLESS=1` writes it first.
pub(crate) fn assert_generated(path: &str, generated: &str) {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("SPKEY_BLESS").is_some() {
        std::fs::write(&full, generated).expect("write the generated file");
    }
    let committed = std::fs::read_to_string(&full).expect("read the generated file");
    assert!(
        committed == generated,
        "unicode/{path} is not what ICU4X's data gives: `SPKEY_BLESS=1 cargo test -p spkey-unicode` rewrites it"
    );
}

#[test]
fn the_tables_are_generated_from_icu4x() {
    assert_generated("src/tables.rs", &generate());
}

/// Collects the first few characters where `ours` and `icu` differ, with
/// how many differ in all.
pub(crate) fn differences<T: PartialEq + std::fmt::Debug>(
    ours: impl Fn(char) -> T,
    icu: impl Fn(char) -> T,
) -> (usize, Vec<String>) {
    let wrong: Vec<String> = chars()
        .filter_map(|c| {
            let (a, b) = (ours(c), icu(c));
            (a != b).then(|| format!("U+{:04X}: {a:?}, ICU4X {b:?}", u32::from(c)))
        })
        .collect();
    (wrong.len(), wrong.into_iter().take(10).collect())
}

#[test]
fn every_character_maps_as_icu4x_maps_it() {
    let one = |c: char| c.to_string();
    let (n, some) = differences(
        |c| map_normalize([c].into_iter()).collect::<String>(),
        |c| icu_map_normalize(&one(c)),
    );
    assert!(n == 0, "map_normalize: {n} differ: {some:?}");
    let (n, some) = differences(
        |c| normalize_validate([c].into_iter()).collect::<String>(),
        |c| icu_normalize_validate(&one(c)),
    );
    assert!(n == 0, "normalize_validate: {n} differ: {some:?}");
}

#[test]
fn every_character_has_icu4x_properties() {
    let (n, some) = differences(category, icu_category);
    assert!(n == 0, "category: {n} differ: {some:?}");
    let (n, some) = differences(bidi_class, icu_bidi_class);
    assert!(n == 0, "bidi_class: {n} differ: {some:?}");
    let (n, some) = differences(joining_type, icu_joining_type);
    assert!(n == 0, "joining_type: {n} differ: {some:?}");
    let mapper = Uts46MapperBorrowed::new();
    let (n, some) = differences(is_virama, |c| mapper.is_virama(c));
    assert!(n == 0, "is_virama: {n} differ: {some:?}");
}

/// Mapping then NFC over a string is not mapping each character: an
/// ignored character between a letter and its accent lets them compose,
/// a mapping can begin with a combining mark, Hangul jamo compose. Mixed
/// strings of such characters, and of any characters, against ICU4X.
#[test]
fn strings_map_as_icu4x_maps_them() {
    let mut rng = fastrand::Rng::with_seed(46);
    let tricky: Vec<char> =
        "aAeE\u{301}\u{300}\u{308}\u{327}\u{323}\u{AD}\u{200B}\u{200C}\u{200D}\u{FE0F}\
         \u{340}\u{341}\u{344}\u{343}ßẞςΣ\u{130}ıİ\u{1100}\u{1161}\u{11A8}\u{AC00}\u{3131}\
         \u{FB01}\u{2474}\u{33C2}\u{FDFA}\u{1D400}\u{FF21}\u{2126}\u{212B}\u{F900}\u{0F73}\
         \u{0F81}\u{1E9B}\u{0385}\u{1FEE}\u{A8}\u{B4}\u{3002}\u{FF0E}\u{FFFD}\u{0}.-"
            .chars()
            .collect();
    for _ in 0..20_000 {
        let text: String = (0..rng.usize(0..10))
            .map(|_| {
                if rng.u8(..) < 200 {
                    tricky[rng.usize(..tricky.len())]
                } else {
                    rng.char(..)
                }
            })
            .collect();
        assert_eq!(
            map_normalize(text.chars()).collect::<String>(),
            icu_map_normalize(&text),
            "map_normalize({text:?})"
        );
        assert_eq!(
            normalize_validate(text.chars()).collect::<String>(),
            icu_normalize_validate(&text),
            "normalize_validate({text:?})"
        );
    }
}

/// The named classes and types are ICU4X's numbers for them.
#[test]
fn the_named_values_are_icu4c_numbers() {
    for (ours, icu) in [
        (bidi::L, BidiClass::LeftToRight),
        (bidi::R, BidiClass::RightToLeft),
        (bidi::EN, BidiClass::EuropeanNumber),
        (bidi::ES, BidiClass::EuropeanSeparator),
        (bidi::ET, BidiClass::EuropeanTerminator),
        (bidi::AN, BidiClass::ArabicNumber),
        (bidi::CS, BidiClass::CommonSeparator),
        (bidi::ON, BidiClass::OtherNeutral),
        (bidi::AL, BidiClass::ArabicLetter),
        (bidi::NSM, BidiClass::NonspacingMark),
        (bidi::BN, BidiClass::BoundaryNeutral),
    ] {
        assert_eq!(ours, icu4c(icu), "{icu:?}");
    }
    for (ours, icu) in [
        (joining::U, JoiningType::NonJoining),
        (joining::C, JoiningType::JoinCausing),
        (joining::D, JoiningType::DualJoining),
        (joining::L, JoiningType::LeftJoining),
        (joining::R, JoiningType::RightJoining),
        (joining::T, JoiningType::Transparent),
    ] {
        assert_eq!(ours, icu4c(icu), "{icu:?}");
    }
}
