//! Unicode's conformance test for UTS 46 (IdnaTestV2.txt, Unicode 16.0.0,
//! as the idna crate ships it), run through idna over this adapter: every
//! line's ToASCII (nontransitional, STD3, hyphens and DNS length checked)
//! gives the expected ASCII, or an error where the line expects one.
//! Where spkey-unicode's tests hold each table to ICU4X's, this holds the
//! glue (the masks, the joining and bidi rules' inputs) to the standard.
//!
//! The tables are ICU4X 2.4's, of Unicode 17, a version newer than the
//! file: a line may expect `[V7]` (a disallowed character) for a character
//! Unicode 17 assigned. Those characters are listed, each must now be
//! assigned, and each must be why some line differs, so the list stays
//! exactly the file's age.

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// A field of the file: `\uXXXX` escapes, which may also spell a lone
/// surrogate (kept as its escape, which is no domain either way).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find("\\u") {
        out.push_str(&rest[..at]);
        let hex = &rest[at + 2..at + 6];
        let code = u32::from_str_radix(hex, 16).expect("four hex digits after \\u");
        match char::from_u32(code) {
            Some(c) => out.push(c),
            None => out.push_str(&rest[at..at + 6]),
        }
        rest = &rest[at + 6..];
    }
    out.push_str(rest);
    out
}

/// Characters the file (Unicode 16.0.0) has as unassigned, which ICU4X's
/// Unicode 17 data assigns (CJK ideographs in plane 3).
const ASSIGNED_SINCE: [char; 3] = ['\u{32B9A}', '\u{3E8AC}', '\u{3F8CD}'];

fn is_error(status: &str) -> bool {
    !status.is_empty() && status != "[]"
}

#[test]
fn every_conformance_line_gives_its_ascii_or_its_error() {
    let uts46 = Uts46::new();
    let (mut checked, mut wrong, mut explained) = (0, Vec::new(), Vec::new());
    for (i, line) in include_str!("IdnaTestV2.txt").lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(';').map(str::trim).collect();
        let [
            source,
            to_unicode,
            to_unicode_status,
            to_ascii,
            to_ascii_status,
            ..,
        ] = fields[..]
        else {
            panic!("line {}: fewer than five fields", i + 1);
        };
        let source = unescape(source);
        // Empty fields repeat the one before them (the file's header).
        let to_unicode = if to_unicode.is_empty() {
            source.clone()
        } else {
            unescape(to_unicode)
        };
        let expected = if to_ascii.is_empty() {
            to_unicode
        } else {
            unescape(to_ascii)
        };
        let status = if to_ascii_status.is_empty() {
            to_unicode_status
        } else {
            to_ascii_status
        };
        let actual = uts46.to_ascii(
            source.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Verify,
        );
        checked += 1;
        let ok = match (&actual, is_error(status)) {
            (Ok(ascii), false) => *ascii == expected,
            (Err(_), true) => true,
            // Valid now only for a character assigned since the file.
            (Ok(ascii), true) if status == "[V7]" && *ascii == expected => {
                let decoded = uts46
                    .to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Check)
                    .0;
                let newer: Vec<char> = decoded
                    .chars()
                    .filter(|c| ASSIGNED_SINCE.contains(c))
                    .collect();
                explained.extend(newer.iter().copied());
                !newer.is_empty()
            }
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "line {}: {source:?} gave {actual:?}, expected {expected:?} {status}",
                i + 1
            ));
        }
    }
    assert!(checked > 6_000, "only {checked} lines read");
    for c in ASSIGNED_SINCE {
        assert!(
            spkey_unicode::category(c) != spkey_unicode::Category::Unassigned,
            "U+{:X} is listed as assigned since Unicode 16 but is not",
            u32::from(c)
        );
        assert!(
            explained.contains(&c),
            "U+{:X} explains no line",
            u32::from(c)
        );
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} lines differ: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}
