//! The email corpus of `tests/fixtures/`, read the same way by the native
//! integration tests and by the wasm suites, so both targets are held to the
//! same cases.

/// One address case: the address, whether it is valid, the fragment the
/// refusal must name, and why.
pub struct Case {
    pub valid: bool,
    pub address: String,
    pub message: Option<String>,
    pub why: String,
}

/// One pair: whether the two addresses are one mailbox.
pub struct Pair {
    pub same: bool,
    pub first: String,
    pub second: String,
    pub why: String,
}

pub const CASES: &str = include_str!("../fixtures/emails.tsv");
pub const PAIRS: &str = include_str!("../fixtures/email-pairs.tsv");

/// `\u{XXXX}` and `\t` escapes, so invisible characters stay visible in
/// the fixture files.
pub fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(hex) = tail.strip_prefix("\\u{").and_then(|t| t.split_once('}')) {
            let code = u32::from_str_radix(hex.0, 16).expect("a hex escape");
            out.push(char::from_u32(code).expect("a scalar value"));
            rest = hex.1;
        } else if let Some(t) = tail.strip_prefix("\\t") {
            out.push('\t');
            rest = t;
        } else {
            out.push('\\');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split('\t').collect::<Vec<_>>())
}

pub fn cases() -> Vec<Case> {
    rows(CASES)
        .map(|row| {
            assert_eq!(row.len(), 4, "a case has four columns: {row:?}");
            Case {
                valid: match row[0] {
                    "valid" => true,
                    "invalid" => false,
                    other => panic!("verdict {other:?}"),
                },
                address: unescape(row[1]),
                message: (row[2] != "-").then(|| row[2].to_owned()),
                why: row[3].to_owned(),
            }
        })
        .collect()
}

pub fn pairs() -> Vec<Pair> {
    rows(PAIRS)
        .map(|row| {
            assert_eq!(row.len(), 4, "a pair has four columns: {row:?}");
            Pair {
                same: row[0] == "same",
                first: unescape(row[1]),
                second: unescape(row[2]),
                why: row[3].to_owned(),
            }
        })
        .collect()
}

/// A `CreateUser` body with `email`, JSON-escaped.
pub fn body(user_id: &str, email: &str) -> String {
    let email = serde_json::to_string(email).expect("strings serialize");
    format!(r#"{{"userId":"{user_id}","email":{email}}}"#)
}
