//! The email rule: what a signup accepts, and when two addresses are one
//! mailbox. The same code, with the same Unicode data compiled in (ICU4X's
//! NFC; general categories, case folding and, through `idna`, UTS 46 from
//! `spkey_unicode`'s tables generated from ICU4X's), runs on every target
//! (native, wasm, the hub), so the rule cannot differ between them.
//!
//! Accepted: after trimming, no control, invisible (format), private-use,
//! unassigned or space character; normalized to NFC; an unquoted dot-atom
//! local part of at most 64 bytes (non-ASCII letters allowed, as RFC 6531
//! does); a domain that UTS 46 converts to ASCII under the STD3 rules
//! (letters, digits, hyphens), with at least two labels of 1 to 63
//! characters, an alphabetic top-level domain, no IP address and no
//! special-use name (`localhost`, `local`, `invalid`, `test`, `onion`,
//! `arpa`); at most 254 bytes once the domain is ASCII. This is what Python's
//! email-validator and the signup forms of large mail providers accept.
//!
//! One mailbox: the uniqueness key is the local part in full Unicode case
//! folding (NFC before and after) and the domain in its lowercase ASCII
//! form, so `ÑANDÚ@x.io` and `ñandú@x.io`, a composed and a decomposed
//! `josé`, and `bücher.de` and `xn--bcher-kva.de` are each one address. The
//! stored email keeps what the user typed, trimmed and in NFC.
//!
//! Every address accepted here is an RFC 5321 mailbox (a dot-atom local
//! part, an LDH domain): the `email_address` crate, the RFC grammar, is the
//! oracle of a test rather than a dependency of the package, whose every
//! byte counts in a browser.

use std::borrow::Cow;

use icu_normalizer::ComposingNormalizerBorrowed;
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use spkey_unicode::Category;

/// Longest email accepted, in bytes once its domain is ASCII (RFC 5321's
/// path limit less the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest local part accepted, in bytes (RFC 5321).
pub const MAX_LOCAL_BYTES: usize = 64;

/// Top-level domains reserved for special use (RFC 6761, 6762, 7686, 6761's
/// registry): no mailbox lives there.
const SPECIAL_USE: [&str; 6] = ["arpa", "invalid", "local", "localhost", "onion", "test"];

/// The characters RFC 5322 allows in a dot-atom besides ASCII letters and
/// digits (RFC 6531 adds every non-ASCII character, filtered above).
const ATEXT: &str = "!#$%&'*+-/=?^_`{|}~";

/// Which ASCII bytes a local part may hold: letters, digits, the dot and
/// [`ATEXT`]. A table, as the local part is checked byte by byte on every
/// command.
const LOCAL_ASCII: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = (b as u8).is_ascii_alphanumeric() || b == b'.' as usize;
        b += 1;
    }
    let atext = ATEXT.as_bytes();
    let mut i = 0;
    while i < atext.len() {
        table[atext[i] as usize] = true;
        i += 1;
    }
    table
};

fn nfc(text: &str) -> Cow<'_, str> {
    ComposingNormalizerBorrowed::new_nfc().normalize(text)
}

/// What a character the rule refuses is, in words, or `None` when it may
/// stand in an address.
fn refused_kind(c: char) -> Option<&'static str> {
    Some(match spkey_unicode::category(c) {
        Category::Control => "a control character",
        Category::Format => "an invisible character",
        Category::PrivateUse => "a private-use character",
        Category::Unassigned => "an unassigned character",
        Category::Space => "a space",
        Category::Mark | Category::Other => return None,
    })
}

/// Whether the rule refuses the ASCII byte `b`: a control or the space,
/// the only ASCII characters `refused_kind` names.
fn ascii_refused(b: u8) -> bool {
    b.is_ascii_control() || b == b' '
}

/// The domain in ASCII (punycode, lowercase) under UTS 46 with the STD3
/// rules, or why not.
fn ascii_domain(domain: &str) -> Result<Cow<'_, str>, String> {
    Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Ignore,
        )
        .map_err(|_| {
            if domain
                .chars()
                .any(|c| c.is_ascii() && !c.is_ascii_alphanumeric() && !matches!(c, '-' | '.'))
            {
                "the domain may hold only letters, digits, hyphens and dots".into()
            } else {
                "the domain is not a valid domain name".into()
            }
        })
}

/// Checks `raw` against the rule. Returns the email to store — trimmed, in
/// NFC, otherwise as typed — or a message that says what is wrong: "is
/// required", or the seed's "Invalid email format" followed by the reason
/// ("Invalid email format: IP addresses are not accepted").
pub fn validate(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("is required".into());
    }
    check(trimmed).map_err(|why| format!("Invalid email format: {why}"))
}

fn check(trimmed: &str) -> Result<String, String> {
    // Most addresses are ASCII, where the rule refuses only controls and
    // the space (`ascii_refused`, held to `refused_kind` by a test) and
    // NFC changes nothing: the Unicode tables are for the rest.
    let ascii = trimmed.is_ascii();
    if (!ascii || trimmed.bytes().any(ascii_refused))
        && let Some(kind) = trimmed.chars().find_map(refused_kind)
    {
        return Err(format!("contains {kind}"));
    }
    let email = if ascii {
        trimmed.to_owned()
    } else {
        nfc(trimmed).into_owned()
    };
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err("must contain an @".into());
    };
    check_local(local)?;
    let ascii_len = check_domain(domain)?;
    if local.len() + 1 + ascii_len > MAX_EMAIL_BYTES {
        return Err(format!("must be at most {MAX_EMAIL_BYTES} bytes"));
    }
    Ok(email)
}

fn check_local(local: &str) -> Result<(), String> {
    if local.is_empty() {
        return Err("has nothing before the @".into());
    }
    if local.starts_with('"') {
        return Err("quoted names before the @ are not accepted".into());
    }
    if local.contains('(') || local.contains(')') {
        return Err("comments are not accepted".into());
    }
    if local.contains('@') || local.contains('<') || local.contains('>') {
        return Err("must hold exactly one address, with one @".into());
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(
            "the part before the @ must not start or end with a dot, or have two in a row".into(),
        );
    }
    // Bytes of a non-ASCII character are all >= 128: left to the rules above.
    if let Some(b) = local
        .bytes()
        .find(|&b| b.is_ascii() && !LOCAL_ASCII[usize::from(b)])
    {
        return Err(format!(
            "the part before the @ may not contain '{}'",
            char::from(b)
        ));
    }
    if local.len() > MAX_LOCAL_BYTES {
        return Err(format!(
            "the part before the @ must be at most {MAX_LOCAL_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Checks the domain; returns the length of its ASCII form.
fn check_domain(domain: &str) -> Result<usize, String> {
    if domain.is_empty() {
        return Err("has no domain after the @".into());
    }
    if domain.starts_with('[') {
        return Err("IP addresses are not accepted".into());
    }
    let ascii = ascii_domain(domain)?;
    // One pass over the labels: how many, whether all are numbers, whether
    // any is empty or too long, and the last.
    let (mut labels, mut numeric, mut misfit, mut tld) = (0, true, false, "");
    for label in ascii.split('.') {
        labels += 1;
        numeric &= !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit());
        misfit |= label.is_empty() || label.len() > 63;
        tld = label;
    }
    if numeric {
        return Err(if labels > 1 {
            "IP addresses are not accepted".into()
        } else {
            "the domain must have a dot, as in example.com".into()
        });
    }
    if labels < 2 {
        return Err("the domain must have a dot, as in example.com".into());
    }
    if misfit {
        return Err("each part of the domain must be 1 to 63 characters".into());
    }
    if !tld.starts_with("xn--") && !tld.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err("the top-level domain must be alphabetic".into());
    }
    if SPECIAL_USE.contains(&tld) {
        return Err(format!(
            "'.{tld}' is a special-use domain where no mailbox can live"
        ));
    }
    Ok(ascii.len())
}

/// The key under which an email is held unique: the local part case-folded
/// (full Unicode folding, NFC) and the domain in lowercase ASCII. Total:
/// an address recorded before the rule tightened still gets a key (a domain
/// UTS 46 refuses is lowercased as it is).
pub fn key(email: &str) -> String {
    let email = nfc(email.trim());
    let (local, domain) = email.rsplit_once('@').unwrap_or((&email, ""));
    let folded = spkey_unicode::fold(local);
    let local = nfc(&folded);
    let domain = ascii_domain(domain)
        .map(Cow::into_owned)
        .unwrap_or_else(|_| domain.to_ascii_lowercase());
    if email.contains('@') {
        format!("{local}@{domain}")
    } else {
        local.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mailbox_one_key() {
        for (a, b) in [
            ("ñandú@example.com", "ÑANDÚ@EXAMPLE.COM"),
            ("jos\u{e9}@example.com", "jose\u{301}@example.com"),
            ("a@bücher.de", "a@xn--bcher-kva.de"),
            ("a@ｅｘａｍｐｌｅ.com", "a@example.com"),
            ("Straße@example.com", "STRASSE@example.com"),
        ] {
            assert_eq!(key(a), key(b), "{a} / {b}");
        }
        assert_ne!(key("ann@example.com"), key("anne@example.com"));
    }

    #[test]
    fn the_ascii_shortcut_refuses_what_the_tables_refuse() {
        for b in 0..=0x7f_u8 {
            assert_eq!(
                ascii_refused(b),
                refused_kind(char::from(b)).is_some(),
                "{b:#04x}"
            );
        }
    }

    #[test]
    fn the_stored_form_is_trimmed_nfc_as_typed() {
        assert_eq!(
            validate("  Jose\u{301}@Bücher.de ").unwrap(),
            "José@Bücher.de"
        );
    }
}
