//! The architecture's mechanical invariants, read off the source tree (in
//! the spirit of rust-analyzer's tidy tests): what ARCHITECTURE.md says a
//! module does not do, a test holds it to.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under the library's and the wasm adapter's sources, as
/// (path relative to the root, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    for dir in ["src", "wasm/src"] {
        walk(&root().join(dir), &mut paths);
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let relative = path.strip_prefix(root()).unwrap();
            (relative.to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

/// Lines that are code: doc and line comments dropped.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
}

/// Places outside `allowed` whose code contains `needle`.
fn offenders(needle: &str, allowed: &[&str]) -> Vec<String> {
    sources()
        .iter()
        .filter(|(path, _)| !allowed.contains(&path.as_str()))
        .flat_map(|(path, text)| {
            code_lines(text)
                .filter(|(_, line)| line.contains(needle))
                .map(move |(n, _)| format!("{path}:{n}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The log module's files: `src/log.rs` and its platform parts.
const LOG: [&str; 3] = ["src/log.rs", "src/log/redo.rs", "src/log/no_redo.rs"];

#[test]
fn only_the_log_declares_tables() {
    let found = offenders("TableDefinition", &LOG);
    assert!(
        found.is_empty(),
        "tables declared outside src/log.rs: {found:?}"
    );
}

#[test]
fn only_the_log_names_meta_keys() {
    let log: String = LOG
        .iter()
        .map(|file| std::fs::read_to_string(root().join(file)).unwrap())
        .collect();
    let keys: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("const META_") && line.contains("b\""))
        .filter_map(|line| line.split("b\"").nth(1)?.split('"').next())
        .collect();
    assert!(
        keys.len() >= 5,
        "the meta keys were not found in src/log.rs: {keys:?}"
    );
    for key in keys {
        let found = offenders(&format!("b\"{key}\""), &LOG);
        assert!(
            found.is_empty(),
            "meta key {key} spelled outside src/log.rs: {found:?}"
        );
    }
}

/// Platform `cfg`s choose whole items — a module's file, a function, a
/// type, an `impl` — never lines inside a body (redb's file backends are
/// the model): a function's code reads the same on every target, and what
/// differs is found by its file (`store/native.rs` against
/// `store/wasm.rs`, `log/redo.rs` against `log/no_redo.rs`).
#[test]
fn platform_cfgs_choose_whole_items() {
    const PLATFORM: [&str; 4] = ["target_family", "target_arch", "target_os", "unix"];
    const ITEM: [&str; 11] = [
        "mod ", "pub ", "pub(", "fn ", "use ", "impl", "struct ", "type ", "const ", "enum ",
        "static ",
    ];
    let mut found = Vec::new();
    for (path, text) in sources() {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("#[cfg(") || !PLATFORM.iter().any(|p| code.contains(p)) {
                continue;
            }
            let indent = line.len() - code.len();
            let next = lines[i + 1..]
                .iter()
                .map(|l| l.trim_start())
                .find(|l| !l.starts_with("#[") && !l.starts_with("//"))
                .unwrap_or("");
            if indent > 4 || !ITEM.iter().any(|item| next.starts_with(item)) {
                found.push(format!("{path}:{}: {code} / {next}", i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "platform cfgs inside a body (choose a whole item or file): {found:#?}"
    );
}

#[test]
fn only_the_system_clock_reads_the_system_time() {
    let found = offenders("SystemTime::now", &["src/clock.rs"]);
    assert!(
        found.is_empty(),
        "SystemTime::now outside src/clock.rs: {found:?}"
    );
}

#[test]
fn every_store_error_says_how_to_handle_it() {
    let text = std::fs::read_to_string(root().join("src/error.rs")).unwrap();
    let body = text
        .split("pub enum StoreError {")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("StoreError is in src/error.rs");
    let mut docs = String::new();
    let mut variants = 0;
    for line in body.lines() {
        let line = line.trim();
        if let Some(doc) = line.strip_prefix("///") {
            docs.push_str(doc);
        } else if line.starts_with('#') {
        } else if line.starts_with(|c: char| c.is_ascii_uppercase()) {
            let name = line.split(['(', ' ', '{', ',']).next().unwrap();
            assert!(
                docs.contains("Handling"),
                "StoreError::{name} does not say how to handle it"
            );
            variants += 1;
            docs.clear();
        } else if !line.is_empty() && !line.starts_with('}') {
            // A field of a struct variant: its docs are not the variant's.
            docs.clear();
        }
    }
    assert!(
        variants >= 10,
        "found {variants} variants: the parse is off"
    );
}

#[test]
fn the_store_error_stays_non_exhaustive() {
    // The umbrella error is what callers match on: it must stay
    // non_exhaustive so that adding a kind is not a breaking change.
    let text = std::fs::read_to_string(root().join("src/error.rs")).unwrap();
    let before = text.split("pub enum StoreError").next().unwrap();
    assert!(before.trim_end().ends_with("#[non_exhaustive]"));
}

/// The names between the quotes of `"Name"` after each `marker` in `text`.
fn quoted_after(text: &str, marker: &str, quote: char) -> Vec<String> {
    text.split(marker)
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix(quote)?;
            Some(rest[..rest.find(quote)?].to_owned())
        })
        .collect()
}

#[test]
fn every_error_name_the_package_throws_is_in_its_typescript_union() {
    let read = |path: &str| std::fs::read_to_string(root().join(path)).unwrap();
    let mut thrown = quoted_after(&read("wasm/src/error.rs"), ": &str =", '"');
    thrown.extend(store_error_names());
    thrown.extend(quoted_after(&read("wasm/js/sync.js"), "hubError(", '\''));
    thrown.sort();
    thrown.dedup();
    let lib = read("wasm/src/lib.rs");
    let union = &lib[lib.find("export type SpkeyErrorName").unwrap()..];
    let union = &union[..union.find(';').unwrap()];
    let mut typed = quoted_after(union, "|", '"');
    typed.sort();
    assert!(
        thrown.len() >= 10,
        "the scan found too few names: {thrown:?}"
    );
    assert_eq!(thrown, typed, "the names thrown and SpkeyErrorName differ");
}

/// The names of the store's error kinds (`ErrorKind::name`).
fn store_error_names() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("src/error.rs")).unwrap();
    let names = &text[text.find("pub fn name(self)").unwrap()..];
    quoted_after(&names[..names.find("\n    }\n").unwrap()], "=>", '"')
}

#[test]
fn every_store_error_kind_is_a_mobile_exception_of_the_same_name() {
    let names = store_error_names();
    assert!(names.len() >= 7, "the scan found too few names: {names:?}");
    let mobile = std::fs::read_to_string(root().join("mobile/src/lib.rs")).unwrap();
    let errors = &mobile[mobile.find("pub enum SpkeyError").unwrap()..];
    let errors = &errors[..errors.find("\n}\n").unwrap()];
    for name in names {
        let variant = format!("    {} ", name.strip_suffix("Error").unwrap());
        let unit = format!("    {},", name.strip_suffix("Error").unwrap());
        assert!(
            errors.contains(&variant) || errors.contains(&unit),
            "the mobile SDK has no exception for {name}"
        );
    }
}

/// Every module of the library has its line in ARCHITECTURE.md's code map.
#[test]
fn every_module_is_in_the_code_map() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let missing: Vec<String> = std::fs::read_dir(root().join("src"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .map(|name| format!("src/{name}"))
        .filter(|path| {
            let shown = path.strip_suffix(".rs").unwrap_or(path);
            !map.contains(&format!("`{shown}"))
        })
        .collect();
    assert!(missing.is_empty(), "not in the code map: {missing:?}");
}

/// A backend that wraps a file forwards every lock redb asks for: a lock
/// method left out would fall back to redb's default, which refuses
/// locking, so a second process would not be kept out.
#[test]
fn every_file_wrapping_backend_forwards_every_lock() {
    const LOCKS: [&str; 6] = [
        "fn try_lock_range",
        "fn try_lock_shared_range",
        "fn lock_range",
        "fn lock_shared_range",
        "fn unlock_range",
        "fn query_lock_range",
    ];
    let wrappers: Vec<(String, String)> = sources()
        .into_iter()
        .filter(|(path, text)| {
            // The memory backend holds no file; OPFS locks the file itself.
            text.contains("impl StorageBackend for")
                && !["src/memory.rs", "wasm/src/opfs.rs"].contains(&path.as_str())
        })
        .collect();
    assert!(wrappers.len() >= 2, "found {} wrappers", wrappers.len());
    for (path, text) in wrappers {
        for lock in LOCKS {
            assert!(text.contains(lock), "{path} does not forward `{lock}`");
        }
    }
}

#[test]
fn the_readme_stays_under_500_lines() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 500,
        "README.md has {lines} lines: move detail to docs/"
    );
}

/// The library's layers, lowest first, as ARCHITECTURE.md draws them: a
/// module may import only from layers below its own (never its own layer,
/// never above), so the layers cannot form a cycle. A new module must be
/// given its layer here.
const LAYERS: [&[&str]; 12] = [
    &["field", "email", "clock", "memory"],
    &["event"],
    &["user"],
    &["codec"],
    &["batch", "command", "scope"],
    &["error"],
    &["log"],
    &[
        "pipeline",
        "journal",
        "readonly",
        "checksums",
        "group",
        "commits",
    ],
    &["verify"],
    &["store"],
    &["sync", "subscribe"],
    &["contract", "http"],
];

/// The layer of a module (`src/x.rs` or `src/x/`), `None` for the crate
/// root and for modules no layer names.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The crate root's `pub use` items, each with the module it comes from:
/// `crate::Store` is an import of `store`.
fn root_items() -> Vec<(String, String)> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let mut items = Vec::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = name.trim();
            if !name.is_empty() {
                items.push((name.to_owned(), module.to_owned()));
            }
        }
    }
    items
}

/// Each module of the library and the modules its code (not its comments)
/// names through `crate::`, with the line.
fn imports() -> Vec<(String, Vec<(usize, String)>)> {
    let root_items = root_items();
    let mut by_module: Vec<(String, Vec<(usize, String)>)> = Vec::new();
    for (path, text) in sources() {
        let Some(rest) = path.strip_prefix("src/") else {
            continue;
        };
        let module = rest
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        let mut found = Vec::new();
        for (n, line) in code_lines(&text) {
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let name = root_items
                    .iter()
                    .find(|(item, _)| *item == name)
                    .map_or(name, |(_, module)| module.clone());
                if name != module {
                    found.push((n, name));
                }
            }
        }
        match by_module.iter_mut().find(|(m, _)| *m == module) {
            Some((_, all)) => all.extend(found),
            None => by_module.push((module, found)),
        }
    }
    by_module
}

#[test]
fn every_import_points_down_the_layers() {
    let mut against = Vec::new();
    for (module, uses) in imports() {
        if module == "lib" || module == "bin" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            against.push(format!("{module} is in no layer of tidy::LAYERS"));
            continue;
        };
        for (line, used) in uses {
            match layer_of(&used) {
                Some(layer) if layer < own => {}
                Some(_) => against.push(format!(
                    "{module} (line {line}) imports {used}, not below it"
                )),
                None => against.push(format!(
                    "{module} (line {line}) imports {used}, in no layer"
                )),
            }
        }
    }
    assert!(
        against.is_empty(),
        "imports against the layers:\n{}",
        against.join("\n")
    );
}

/// The cells of the first table row of `file` whose first cell is `first`.
fn result_row(file: &str, first: &str, nth_table: usize) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let mut tables = 0;
    let mut in_table = false;
    for line in text.lines() {
        let is_row = line.starts_with('|');
        if is_row && !in_table {
            tables += 1;
        }
        in_table = is_row;
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
        if is_row && tables == nth_table && cells.get(1).map(String::as_str) == Some(first) {
            return cells[1..cells.len() - 1].to_vec();
        }
    }
    panic!("{file} has no row {first:?} in table {nth_table}");
}

/// A cell's leading figure: `135 (95–1502) 1.00×` → `135`.
fn figure(cell: &str) -> &str {
    cell.split_whitespace().next().unwrap()
}

/// The README's headline table, as the benchmarks' own result files make
/// it: `cargo bench --bench compare` (benches/results/compare.md), the
/// hub's load bench (hub/benches/results/load.md), the npm package's
/// throughput (wasm/bench/results/throughput.md) and `bash mobile/bench.sh`
/// (mobile/results/bench.md). `SPKEY_BLESS=1` writes it into the README.
#[test]
fn the_readme_headline_table_is_the_benchmarks_output() {
    let ours = result_row("benches/results/compare.md", "spkey-store", 1);
    let sqlite = result_row("benches/results/compare.md", "SQLite WAL FULL", 1);
    let lmdb = result_row("benches/results/compare.md", "LMDB", 1);
    let ours_1m = result_row("benches/results/compare.md", "spkey-store", 2);
    let sqlite_1m = result_row("benches/results/compare.md", "SQLite WAL FULL", 2);
    let writers = |name: &str| result_row("benches/results/compare.md", name, 3)[1].clone();
    let hub = result_row("hub/benches/results/load.md", "64", 1);
    let js = |name: &str| result_row("wasm/bench/results/throughput.md", name, 1)[2].clone();
    let memory = result_row("mobile/results/bench.md", "in memory", 1);
    let file = result_row("mobile/results/bench.md", "file, durable commits", 1);
    let table = [
        "| what | figure |".to_owned(),
        "|---|---|".to_owned(),
        format!(
            "| durable single create (journal + fsync), median | {} µs (SQLite WAL FULL: {} µs) |",
            figure(&ours[1]),
            figure(&sqlite[1])
        ),
        format!(
            "| batched creates, 1,000 per commit, at 1M records | {} µs/record (SQLite: {}) |",
            figure(&ours_1m[1]),
            figure(&sqlite_1m[1])
        ),
        format!(
            "| lookup by user id, 100k users | {} µs (LMDB: {}) |",
            figure(&ours[4]),
            figure(&lmdb[4])
        ),
        format!(
            "| durable creates from 8 threads at once | {}/s (SQLite: {}, LMDB: {}) |",
            writers("spkey-store, 8 threads"),
            writers("SQLite WAL FULL, 8 connections"),
            writers("LMDB, 8 threads")
        ),
        format!(
            "| durable creates over HTTP, 64 clients (redb hub) | {}/s, p99 {} ms |",
            hub[1], hub[3]
        ),
        format!(
            "| createUser from Node (the npm package), warm / cold | {} / {} native's speed |",
            js("Node, the fast .wasm (its entry's), warm"),
            js("Node, the fast .wasm (its entry's), cold")
        ),
        format!(
            "| createUser from Kotlin (JVM), in memory / durable file | {} / {} native's speed |",
            memory[3], file[3]
        ),
    ]
    .join("\n");
    readme_block(
        "<!-- headline: written by tests/it/tidy.rs from the benchmarks' result files (SPKEY_BLESS=1) -->\n",
        "\n<!-- headline end -->",
        &table,
        "headline table",
    );
}

/// Replaces what lies between `begin` and `end` in the README with `text`
/// under `SPKEY_BLESS=1`; otherwise fails when they differ.
fn readme_block(begin: &str, end: &str, text: &str, what: &str) {
    let readme_path = root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme
        .find(begin)
        .unwrap_or_else(|| panic!("README has no {begin:?}"))
        + begin.len();
    let stop = start
        + readme[start..]
            .find(end)
            .unwrap_or_else(|| panic!("README has no {end:?} after {begin:?}"));
    if std::env::var_os("SPKEY_BLESS").is_some() {
        let rewritten = format!("{}{text}{}", &readme[..start], &readme[stop..]);
        std::fs::write(&readme_path, rewritten).unwrap();
        return;
    }
    assert_eq!(
        readme[start..stop],
        *text,
        "the README's {what} differs from the result files: SPKEY_BLESS=1 cargo test --test it tidy rewrites it"
    );
}

/// Every target a benchmark's result file judges missed, as one line each:
/// a table row whose last cell is `missed` (its first cell the target, or,
/// in a table with a verdict column, the row's name, its ratio and the
/// column's target), or a printed line's clauses up to its last `missed`.
fn missed_in(file: &str, label: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    // A table's header is the row above its `|---|` line.
    let (mut header, mut above): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut missed = Vec::new();
    for line in text.lines() {
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
        if line.starts_with('|') {
            let cells = &cells[1..cells.len() - 1];
            if cells.iter().all(|c| c.chars().all(|c| c == '-')) {
                header = std::mem::take(&mut above);
                continue;
            }
            above = cells.to_vec();
            if cells.last().map(String::as_str) == Some("missed") {
                missed.push(if cells.len() == 2 {
                    format!("{label}: {}", cells[0])
                } else {
                    format!(
                        "{label}, {}: {} ({})",
                        cells[0],
                        cells[cells.len() - 2],
                        header.last().map_or("", String::as_str)
                    )
                });
            }
        } else if let Some(printed) = line.strip_prefix("- ")
            && printed.contains("missed")
        {
            let clauses: Vec<&str> = printed.split("; ").collect();
            let last = clauses.iter().rposition(|c| c.contains("missed")).unwrap();
            missed.push(format!("{label}: {}", clauses[..=last].join("; ")));
        }
    }
    missed
}

/// The README's list of the targets missed, as the benchmarks' result
/// files judge them (each line says how far; the linked pages say why and
/// what was tried). `SPKEY_BLESS=1` writes it into the README.
#[test]
fn the_readme_lists_every_target_the_benchmarks_judge_missed() {
    let sources = [
        ("benches/results/compare.md", "[store](docs/performance.md)"),
        ("hub/benches/results/load.md", "[hub](docs/hub.md)"),
        (
            "hub/benches/results/postgres.md",
            "[PostgreSQL hub](docs/scaling.md)",
        ),
        (
            "wasm/bench/results/throughput.md",
            "[npm](docs/javascript.md)",
        ),
        (
            "mobile/results/bench.md",
            "[Kotlin ÷ native](docs/mobile.md)",
        ),
    ];
    let lines: Vec<String> = sources
        .iter()
        .flat_map(|(file, label)| missed_in(file, label))
        .map(|line| format!("- {line}"))
        .collect();
    // One line for each line of the files that judges something missed.
    let judged: usize = sources
        .iter()
        .map(|(file, _)| {
            std::fs::read_to_string(root().join(file))
                .unwrap()
                .lines()
                .filter(|l| l.contains("missed"))
                .count()
        })
        .sum();
    assert_eq!(
        lines.len(),
        judged,
        "a missed target the list leaves out: {lines:?}"
    );
    readme_block(
        "<!-- missed: written by tests/it/tidy.rs from the benchmarks' result files (SPKEY_BLESS=1) -->\n",
        "\n<!-- missed end -->",
        &lines.join("\n"),
        "list of missed targets",
    );
}

#[test]
fn the_npm_packages_sync_names_the_cores_batch_format() {
    let sync = std::fs::read_to_string(root().join("wasm/js/sync.js")).unwrap();
    let named = quoted_after(&sync, "const BATCH_FORMAT = ", '\'');
    assert_eq!(
        named,
        [spkey_store::BATCH_FORMAT.to_string()],
        "wasm/js/sync.js sends another batch format than the core reads"
    );
}

/// Each benchmark's result file, in the order `docs/benchmarks.md` shows
/// them: (section title, the command that writes it, the file).
const RESULTS: [(&str, &str, &str); 7] = [
    (
        "The store against redb, SQLite, LMDB and the fsync floor",
        "cargo bench --bench compare",
        "benches/results/compare.md",
    ),
    (
        "The hub on redb under load",
        "cargo bench -p spkey-hub --bench load",
        "hub/benches/results/load.md",
    ),
    (
        "The hub on PostgreSQL, one node and three",
        "cargo bench -p spkey-hub --bench postgres",
        "hub/benches/results/postgres.md",
    ),
    (
        "The npm package: the first answer in a browser",
        "node wasm/bench/first-create.mjs",
        "wasm/bench/results/first-create.md",
    ),
    (
        "The npm package: createUser in Node, Deno, Bun and Chromium",
        "node wasm/bench/throughput.mjs 5000",
        "wasm/bench/results/throughput.md",
    ),
    (
        "The npm package: heap and rate at 100,000 users in OPFS",
        "node wasm/bench/heap.mjs",
        "wasm/bench/results/heap.md",
    ),
    (
        "The mobile SDK: Kotlin against native",
        "bash mobile/bench.sh",
        "mobile/results/bench.md",
    ),
];

/// `docs/benchmarks.md` is every benchmark's own printout, assembled here
/// and never edited by hand (`SPKEY_BLESS=1` rewrites it after a
/// benchmark ran); the other docs link to it instead of copying figures.
#[test]
fn docs_benchmarks_is_the_benchmarks_output() {
    let mut text = String::from(
        "# Benchmarks: the figures\n\n\
         Every table below is a benchmark's own output, copied from its result \
         file by `tests/it/tidy.rs` (`SPKEY_BLESS=1 cargo test --test it \
         tidy::docs_benchmarks` after running a benchmark); nothing here is \
         written by hand. What each measures, the targets and why some are \
         missed: [performance.md](performance.md), [hub.md](hub.md), \
         [scaling.md](scaling.md), [javascript.md](javascript.md), \
         [mobile.md](mobile.md). All on the 2-core CI machine.\n",
    );
    for (title, command, file) in RESULTS {
        let result = std::fs::read_to_string(root().join(file)).unwrap();
        // A result file's own title gives way to the section's.
        let result = match result.strip_prefix("# ") {
            Some(titled) => titled.split_once('\n').map_or("", |(_, rest)| rest),
            None => &result,
        };
        text.push_str(&format!(
            "\n## {title}\n\n`{command}` writes `{file}`:\n\n{}\n",
            result.trim()
        ));
    }
    let path = root().join("docs/benchmarks.md");
    if std::env::var_os("SPKEY_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        found == text,
        "docs/benchmarks.md differs from the result files: SPKEY_BLESS=1 cargo test --test it tidy::docs_benchmarks rewrites it"
    );
}
