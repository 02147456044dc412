//! The structures the driver reads, laid out for Windows on ARM (`aarch64-pc-windows-msvc`),
//! against the headers' numbers in `tests/layout_expected.txt` and against x64.
//!
//! `tests/layout.rs` checks windows-sys's layouts on the x64 host. A host test cannot evaluate
//! `offset_of!` for another target, so this one compiles a small layout probe *for* the target:
//! the same table of Rust expressions (`ACTUAL` in `tests/layout.rs`, copied textually so the two
//! cannot drift) into a static array, compiled to assembly by rustc for `aarch64-pc-windows-msvc`
//! and for `x86_64-pc-windows-msvc` against the windows-sys and driver rlibs built for each, and
//! reads the numbers back from the `.xword`/`.quad` lines (as `scripts/derive-layouts.sh` reads
//! the C compiler's). Each structure's alignment is read the same way.
//!
//! What the headers say about ARM64: the one architecture conditional in the layouts the driver
//! reads is `POINTER_ALIGNMENT`, `DECLSPEC_ALIGN(8)` under `_WIN64` (mingw-w64 `ddk/wdm.h`, the
//! header the x64 numbers come from: `#if defined(_WIN64)` / `#define POINTER_ALIGNMENT
//! DECLSPEC_ALIGN(8)`), and `_WIN64` is defined on ARM64 as on x64; every member is a pointer, a
//! handle, or a fixed-width integer, which LLP64 gives the same size and alignment on both. So no
//! entry may differ: [`HEADER_STATED_ARM64_DIFFERENCES`] is empty, and the test prints the table
//! that shows it.
//!
//! Ignored by default: it builds the driver's rlib for both Windows targets (into
//! `target/image-probe`, which the package test's probe builds share; about 20 s when warm).
//! `scripts/test.sh` runs it with `--ignored`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const LAYOUT_RS: &str = include_str!("layout.rs");
const EXPECTED: &str = include_str!("layout_expected.txt");

/// Entries where the headers themselves give ARM64 another value than x64 (name, ARM64 value).
/// None: see the module documentation.
const HEADER_STATED_ARM64_DIFFERENCES: &[(&str, usize)] = &[];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `use` statements and the `ACTUAL` table of tests/layout.rs, as source text.
fn layout_table_source() -> (String, String) {
    let mut uses = String::new();
    let mut statement = String::new();
    for line in LAYOUT_RS.lines() {
        if statement.is_empty() && !line.starts_with("use ") {
            continue;
        }
        statement.push_str(line);
        statement.push('\n');
        if line.trim_end().ends_with(';') {
            // Host-only imports (collections) are not needed by the table.
            if !statement.starts_with("use std::") {
                uses.push_str(&statement);
            }
            statement.clear();
        }
    }
    let start = LAYOUT_RS
        .find("const ACTUAL: &[(&str, usize)] = &[")
        .expect("tests/layout.rs has its ACTUAL table");
    let end = start
        + LAYOUT_RS[start..]
            .find("\n];")
            .expect("the ACTUAL table ends with `];`")
        + "\n];".len();
    (uses, LAYOUT_RS[start..end].to_string())
}

/// The names of the table's entries, in order (the first string of each tuple).
fn table_names(table: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = table;
    while let Some(open) = rest.find('(') {
        rest = &rest[open + 1..];
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix('"') {
            let close = after.find('"').expect("a closed string");
            names.push(after[..close].to_string());
            rest = &after[close..];
        }
    }
    names
}

/// The probe: the table, its values and each sized type's alignment in one exported array.
fn probe_source(uses: &str, table: &str, names: &[String]) -> (String, Vec<String>) {
    let aligned: Vec<&String> = names.iter().filter(|name| !name.contains('.')).collect();
    // no_std: the driver's rlib brings its own panic handler.
    let mut source = String::from("#![no_std]\n#![allow(unused_imports)]\n");
    source.push_str(uses);
    source.push_str(table);
    source.push_str("\nconst ALIGN: &[usize] = &[\n");
    for name in &aligned {
        // `size_of::<T>()` -> `core::mem::align_of::<T>()` for the same T.
        let at = table
            .find(&format!("\"{name}\""))
            .expect("the name is in the table");
        let expression = &table[at..];
        let size = expression.find("size_of::<").expect("a size entry");
        let close = expression[size..].find(">()").expect("size_of::<T>()") + size;
        let ty = &expression[size + "size_of::<".len()..close];
        source.push_str(&format!("    core::mem::align_of::<{ty}>(),\n"));
    }
    source.push_str(
        "];\n#[unsafe(no_mangle)]\npub static FSENSE_LAYOUT_PROBE: [usize; ACTUAL.len() + ALIGN.len()] = {\n\
         let mut values = [0; ACTUAL.len() + ALIGN.len()];\n\
         let mut index = 0;\n\
         while index < ACTUAL.len() { values[index] = ACTUAL[index].1; index += 1; }\n\
         while index < ACTUAL.len() + ALIGN.len() { values[index] = ALIGN[index - ACTUAL.len()]; index += 1; }\n\
         values\n};\n",
    );
    let mut keys: Vec<String> = names.to_vec();
    keys.extend(aligned.iter().map(|name| format!("align {name}")));
    (source, keys)
}

/// Builds the driver's rlib for `target`; returns (deps dir, windows-sys rlib, driver rlib).
fn build_rlibs(target: &str, target_dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--locked",
            "-p",
            "fsense-driver",
            "--lib",
            "--release",
            "--message-format=json",
            "--target",
            target,
            "--target-dir",
        ])
        .arg(target_dir)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "building the driver for {target}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let rlib_of = |crate_name: &str| -> PathBuf {
        let line = stdout
            .lines()
            .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
            .find(|line| line.contains(&format!("\"name\":\"{crate_name}\"")))
            .unwrap_or_else(|| panic!("cargo built no {crate_name} for {target}"));
        let rlib = line
            .split('"')
            .find(|field| field.ends_with(".rlib"))
            .unwrap_or_else(|| panic!("no rlib for {crate_name} in {line}"));
        PathBuf::from(rlib)
    };
    let windows_sys = rlib_of("windows_sys");
    let driver = rlib_of("fsense_driver");
    let deps = windows_sys.parent().expect("deps dir").to_path_buf();
    (deps, windows_sys, driver)
}

/// The rustc of the toolchain running this test (next to its cargo), which built the rlibs.
fn rustc() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .map(|cargo| cargo.with_file_name(format!("rustc{}", std::env::consts::EXE_SUFFIX)))
        .filter(|rustc| rustc.is_file())
        .unwrap_or_else(|| PathBuf::from("rustc"))
}

/// Compiles the probe for `target` and reads its values back from the assembly.
fn probe(target: &str, source: &str, count: usize) -> Vec<usize> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("image-probe");
    let (deps, windows_sys, driver) = build_rlibs(target, &target_dir);
    let work = target_dir.join(format!("layout-probe-{target}"));
    std::fs::create_dir_all(&work).expect("probe dir");
    let source_path = work.join("probe.rs");
    std::fs::write(&source_path, source).expect("write the probe");
    let assembly = work.join("probe.s");
    let output = Command::new(rustc())
        .current_dir(workspace_root())
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "lib",
            "--crate-name",
            "fsense_layout_probe",
            "--target",
            target,
            "-C",
            "panic=abort",
            "--emit",
        ])
        .arg(format!("asm={}", assembly.display()))
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("--extern")
        .arg(format!("windows_sys={}", windows_sys.display()))
        .arg("--extern")
        .arg(format!("fsense_driver={}", driver.display()))
        .arg(&source_path)
        .output()
        .expect("run rustc");
    assert!(
        output.status.success(),
        "compiling the layout probe for {target}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&assembly).expect("probe assembly");
    let start = text
        .lines()
        .position(|line| line.trim_end() == "FSENSE_LAYOUT_PROBE:")
        .expect("the probe's array in the assembly");
    let bytes = data_bytes(text.lines().skip(start + 1), count * 8);
    let values: Vec<usize> = bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            u64::from_le_bytes(word) as usize
        })
        .collect();
    assert_eq!(
        values.len(),
        count,
        "{target}: values read from {}",
        assembly.display()
    );
    values
}

/// The bytes the data directives after a label lay down (LLVM writes a constant array as
/// `.ascii`/`.asciz` strings with GNU escapes, or as `.xword`/`.quad`/`.zero` lines), up to `limit`.
fn data_bytes<'a>(lines: impl Iterator<Item = &'a str>, limit: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in lines {
        let line = line.trim();
        let (directive, operand) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let operand = operand.trim();
        match directive {
            ".xword" | ".quad" => {
                let value: u64 = operand.parse().expect("a number");
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            ".zero" | ".space" => {
                let count: usize = operand.parse().expect("a byte count");
                bytes.extend(std::iter::repeat_n(0, count));
            }
            ".ascii" | ".asciz" => {
                let inner = operand
                    .strip_prefix('"')
                    .and_then(|rest| rest.strip_suffix('"'))
                    .expect("a quoted string");
                let mut chars = inner.chars().peekable();
                while let Some(c) = chars.next() {
                    if c != '\\' {
                        bytes.push(c as u8);
                        continue;
                    }
                    match chars.next().expect("an escape") {
                        'b' => bytes.push(8),
                        'f' => bytes.push(12),
                        'n' => bytes.push(10),
                        'r' => bytes.push(13),
                        't' => bytes.push(9),
                        digit @ '0'..='7' => {
                            let mut value = digit.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                match chars.peek().and_then(|c| c.to_digit(8)) {
                                    Some(next) => {
                                        value = value * 8 + next;
                                        chars.next();
                                    }
                                    None => break,
                                }
                            }
                            bytes.push(value as u8);
                        }
                        other => bytes.push(other as u8),
                    }
                }
                if directive == ".asciz" {
                    bytes.push(0);
                }
            }
            _ => break,
        }
        if bytes.len() >= limit {
            break;
        }
    }
    bytes.truncate(limit);
    bytes
}

fn expected() -> BTreeMap<String, usize> {
    EXPECTED
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once(' ').expect("NAME VALUE");
            (name.to_string(), value.trim().parse().expect("a number"))
        })
        .collect()
}

#[test]
fn data_directives_are_read_back_as_bytes() {
    let lines = [
        "\t.asciz\t\"X\\000\\b\\020\\\\a\"",
        "\t.xword\t88",
        "\t.zero\t2",
        "\t.section\t.data",
    ];
    assert_eq!(
        data_bytes(lines.into_iter(), 64),
        [
            vec![b'X', 0, 8, 16, b'\\', b'a', 0],
            88u64.to_le_bytes().to_vec(),
            vec![0, 0]
        ]
        .concat()
    );
}

#[test]
fn the_table_is_read_from_tests_layout_rs() {
    let (uses, table) = layout_table_source();
    assert!(uses.contains("windows_sys::"), "{uses}");
    let names = table_names(&table);
    let expected = expected();
    // The same entries as layout_expected.txt (tests/layout.rs checks that too, on the host).
    let mut sorted = names.clone();
    sorted.sort();
    let mut keys: Vec<String> = expected.keys().cloned().collect();
    keys.sort();
    assert_eq!(sorted, keys);
    let (source, probe_keys) = probe_source(&uses, &table, &names);
    assert!(
        source.contains("align_of::<FLT_CALLBACK_DATA>()"),
        "{source}"
    );
    assert!(probe_keys.len() > names.len());
}

#[test]
#[ignore = "builds the driver's rlib for both Windows targets (about 20 s warm)"]
fn arm64_layouts_match_the_headers_and_x64() {
    let (uses, table) = layout_table_source();
    let names = table_names(&table);
    let (source, keys) = probe_source(&uses, &table, &names);
    let arm64 = probe("aarch64-pc-windows-msvc", &source, keys.len());
    let x64 = probe("x86_64-pc-windows-msvc", &source, keys.len());
    let expected = expected();
    let stated: BTreeMap<&str, usize> = HEADER_STATED_ARM64_DIFFERENCES.iter().copied().collect();
    let mut differences = Vec::new();
    println!(
        "{:<52} {:>8} {:>8} {:>8}",
        "entry", "headers", "x64", "arm64"
    );
    for (index, key) in keys.iter().enumerate() {
        let headers = expected.get(key.as_str()).copied();
        let want = stated
            .get(key.as_str())
            .copied()
            .or(headers)
            .unwrap_or(x64[index]);
        println!(
            "{key:<52} {:>8} {:>8} {:>8}",
            headers.map_or_else(|| "-".to_string(), |value| value.to_string()),
            x64[index],
            arm64[index]
        );
        if arm64[index] != want || headers.is_some_and(|value| value != x64[index]) {
            differences.push(format!(
                "{key}: headers {headers:?}, x64 {}, arm64 {} (expected {want})",
                x64[index], arm64[index]
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "layouts that differ from the headers:\n  {}",
        differences.join("\n  ")
    );
}
