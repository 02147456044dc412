//! Issue 27 on Linux: deletes, renames and hard links reported as the Windows driver reports
//! them (a delete record, a rename with both names, a link with the new name), for hostile names
//! too: newlines, invalid UTF-8, a leading dash, names of 255 bytes.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fsense_proto::Utf16Path;
use serde_json::Value;

use super::{WatchRun, bytes, exact_path, in_private_namespace};

/// The exact bytes of `file_result.path` (units when it is not text).
fn exact_result_path(line: &Value) -> Vec<u8> {
    match line["unmapped"]["target_units"].as_array() {
        Some(units) => {
            let bytes: Vec<u8> = units
                .iter()
                .flat_map(|u| (u.as_u64().unwrap() as u16).to_le_bytes())
                .collect();
            let path = Utf16Path::from_le_bytes(&bytes).unwrap();
            fsense::pipeline::paths::linux_bytes_from_units(&path).expect("surrogate-escaped")
        }
        None => line["file_result"]["path"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec(),
    }
}

fn hostile_names() -> Vec<Vec<u8>> {
    vec![
        b"plain.txt".to_vec(),
        b"new\nline".to_vec(),
        b"-leading-dash".to_vec(),
        b"bad-utf8-\xff\xfe\x80".to_vec(),
        "ünïcödé-🦀".as_bytes().to_vec(),
        vec![b'n'; 255],
    ]
}

fn join(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

#[test]
fn deletes_are_reported_with_their_exact_names() {
    in_private_namespace(
        "namespace::deletes_are_reported_with_their_exact_names",
        || {
            let run = WatchRun::start(&[]);
            let w = run.watched();
            let names = hostile_names();
            for n in &names {
                fs::write(join(&w, n), b"x").unwrap();
            }
            fs::create_dir(w.join("dir")).unwrap();
            // A file deleted while a descriptor is still open: the name goes at once.
            let held = w.join("held");
            fs::write(&held, b"x").unwrap();
            let open = fs::File::open(&held).unwrap();
            for n in &names {
                fs::remove_file(join(&w, n)).unwrap();
            }
            fs::remove_file(&held).unwrap();
            fs::remove_dir(w.join("dir")).unwrap();
            fs::write(run.outside().join("elsewhere"), b"x").unwrap();
            fs::remove_file(run.outside().join("elsewhere")).unwrap();
            let (lines, summary) = run.stop();
            drop(open);

            let deletes: Vec<&Value> = lines.iter().filter(|l| l["activity_id"] == 4).collect();
            for n in &names {
                let want = bytes(&join(&w, n));
                let d = deletes
                    .iter()
                    .find(|l| exact_path(l) == want)
                    .unwrap_or_else(|| {
                        panic!("no delete of {:?}: {summary}", String::from_utf8_lossy(n))
                    });
                assert_eq!(d["activity_name"], "Delete");
                assert_eq!(d["type_uid"], 100104);
                assert_eq!(d["unmapped"]["operation"], "delete");
                assert_eq!(d["file"]["type_id"], 1);
                assert_ne!(d["actor"]["process"]["pid"], 0);
            }
            assert!(deletes.iter().any(|l| exact_path(l) == bytes(&held)));
            let dir = deletes
                .iter()
                .find(|l| exact_path(l) == bytes(&w.join("dir")))
                .expect("no delete of the directory");
            assert_eq!(dir["file"]["type_id"], 2);
            assert!(
                deletes
                    .iter()
                    .all(|l| exact_path(l).starts_with(&bytes(&w)))
            );
            assert_eq!(summary["dropped"], 0, "{summary}");
        },
    );
}

#[test]
fn renames_carry_the_old_name_as_file_and_the_new_as_file_result() {
    in_private_namespace(
        "namespace::renames_carry_the_old_name_as_file_and_the_new_as_file_result",
        || {
            let run = WatchRun::start(&[]);
            let w = run.watched();
            let names = hostile_names();
            let mut moves = Vec::new();
            for (i, n) in names.iter().enumerate() {
                let old = join(&w, n);
                fs::write(&old, b"x").unwrap();
                // Hostile old names renamed to hostile new ones (255 bytes stay 255).
                let mut new_name = n.clone();
                new_name.truncate(250);
                new_name.extend_from_slice(format!(".r{i}").as_bytes());
                let new = join(&w, &new_name);
                fs::rename(&old, &new).unwrap();
                moves.push((old, new));
            }
            let (lines, summary) = run.stop();
            let renames: Vec<&Value> = lines.iter().filter(|l| l["activity_id"] == 5).collect();
            for (old, new) in &moves {
                let r = renames
                    .iter()
                    .find(|l| exact_result_path(l) == bytes(new))
                    .unwrap_or_else(|| panic!("no rename to {}: {lines:?}", new.display()));
                assert_eq!(exact_path(r), bytes(old));
                assert_eq!(r["unmapped"]["operation"], "rename");
                assert_eq!(r["type_uid"], 100105);
            }
            assert_eq!(summary["dropped"], 0, "{summary}");
        },
    );
}

#[test]
fn hard_links_are_reported_as_links_and_new_files_as_creates() {
    in_private_namespace(
        "namespace::hard_links_are_reported_as_links_and_new_files_as_creates",
        || {
            let run = WatchRun::start(&[]);
            let w = run.watched();
            let o = run.outside();
            // A file that existed before, linked under hostile names.
            let existing = o.join("existing");
            fs::write(&existing, b"x").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let names = hostile_names();
            for n in &names {
                fs::hard_link(&existing, join(&w, n)).unwrap();
            }
            // A new file and a link to it in quick succession.
            fs::write(w.join("fresh"), b"x").unwrap();
            fs::hard_link(w.join("fresh"), w.join("fresh-link")).unwrap();
            let (lines, summary) = run.stop();

            let links: Vec<&Value> = lines.iter().filter(|l| l["activity_id"] == 99).collect();
            for n in &names {
                let want = bytes(&join(&w, n));
                let l = links
                    .iter()
                    .find(|l| exact_result_path(l) == want)
                    .unwrap_or_else(|| {
                        panic!("no link {:?}: {lines:?}", String::from_utf8_lossy(n))
                    });
                assert_eq!(l["activity_name"], "Link");
                assert_eq!(l["unmapped"]["operation"], "link");
                // The existing name, when the kernel gave another name than the new one.
                let file = exact_path(l);
                assert!(
                    file.is_empty() || file != want,
                    "the link's file is its own new name"
                );
                assert!(
                    !lines
                        .iter()
                        .any(|c| c["activity_id"] == 1 && exact_path(c) == want),
                    "a link also reported as a create"
                );
            }
            let fresh = bytes(&w.join("fresh"));
            assert!(
                lines
                    .iter()
                    .any(|l| l["activity_id"] == 1 && exact_path(l) == fresh),
                "the new file is a create: {lines:?}"
            );
            assert!(
                links
                    .iter()
                    .any(|l| exact_result_path(l) == bytes(&w.join("fresh-link"))),
                "the link to the new file: {lines:?}"
            );
            assert_eq!(summary["dropped"], 0, "{summary}");
        },
    );
}
