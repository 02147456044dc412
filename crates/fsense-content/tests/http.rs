//! Issue 15: content from a web server. One Python server per test binary (HTTP and HTTPS on
//! 127.0.0.1, a certificate made here with `openssl`) serves repositories in several states; the
//! faults (server down, slow, truncating, tampered, rolled back) must leave installed content
//! untouched with one readable error line, and `verify` must say why.
#![cfg(unix)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fsense_content::http::HttpSettings;
use fsense_content::state::{StateDir, UpdateOutcome};
use fsense_content::tuf::{self, RepoLocation};
use fsense_content::{ContentError, load_active};

struct Server {
    dir: PathBuf,
    http: u16,
    https: u16,
    ca: PathBuf,
    keys: PathBuf,
}

fn rules(version: u64) -> String {
    format!(
        "version = {version}\n[[rule]]\nid = \"office-macro-drop\"\ntemplate = \"path_match\"\nseverity = \"high\"\n[rule.fields]\noperation = \"create\"\nglob = \"**/*.docm\"\n"
    )
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let p = |name: &str| dir.join(name);
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=fsense test CA"])
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.pem")));
}

/// The server and its repositories, made once per test binary:
/// `good` (v1, v2), `old` (v1 only: a rollback), `tampered` (v2's rules altered), and copies of
/// `good` under `slow` and `truncate`, which the server answers slowly or cut short.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let keys = dir.join("keys");
        tuf::keygen(&keys).unwrap();
        let root_dir = dir.join("www");
        std::fs::create_dir(&root_dir).unwrap();
        let good = root_dir.join("good");
        let publish = |version: u64, repo: &Path| {
            let file = dir.join(format!("rules-{version}.toml"));
            std::fs::write(&file, rules(version)).unwrap();
            tuf::publish(&file, &keys, repo).unwrap();
        };
        publish(1, &good);
        copy_dir(&good, &root_dir.join("old"));
        publish(2, &good);
        for name in ["tampered", "slow", "truncate"] {
            copy_dir(&good, &root_dir.join(name));
        }
        for entry in std::fs::read_dir(root_dir.join("tampered/targets")).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with("rules-2.toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                std::fs::write(&path, text.replace("docm", "xlsm")).unwrap();
            }
        }
        make_certificates(&dir);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_repo_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(&root_dir)
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the test web server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .strip_prefix("PORTS ")
            .unwrap_or_else(|| panic!("server said {line:?}"))
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        // The server exits with this process (it watches its parent).
        std::mem::forget(child);
        Server {
            http: ports[0],
            https: ports[1],
            ca: dir.join("ca.pem"),
            keys,
            dir,
        }
    })
}

impl Server {
    fn root(&self) -> PathBuf {
        self.keys.join("root.json")
    }

    fn http(&self, repo: &str) -> RepoLocation {
        self.location(&format!("http://127.0.0.1:{}/{repo}/", self.http), None)
    }

    fn https(&self, repo: &str, ca: Option<&Path>) -> RepoLocation {
        self.location(&format!("https://127.0.0.1:{}/{repo}", self.https), ca)
    }

    fn location(&self, url: &str, ca: Option<&Path>) -> RepoLocation {
        let settings = HttpSettings {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            tries: 2,
            ca_file: ca.map(Path::to_owned),
            ..HttpSettings::default()
        };
        RepoLocation::parse(url.as_ref(), &settings)
    }

    /// A state directory with v1 installed from the local copy of `old`.
    fn sensor_with_v1(&self, name: &str) -> StateDir {
        let state = StateDir::open(&tempfile::tempdir().unwrap().keep().join(name)).unwrap();
        state
            .update(&self.dir.join("www/old"), &self.root())
            .unwrap();
        state
    }
}

fn assert_one_line_error<T: std::fmt::Debug>(
    result: Result<T, ContentError>,
    needle: &str,
) -> String {
    let err = result.expect_err("must fail");
    let line = err.to_string();
    assert_ne!(err.exit_code(), 0);
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.to_lowercase().contains(&needle.to_lowercase()),
        "`{line}` should say `{needle}`"
    );
    line
}

#[test]
fn update_and_verify_over_http_and_https() {
    let server = server();
    let state = server.sensor_with_v1("plain");
    assert_eq!(
        state
            .update_from(&server.http("good"), &server.root())
            .unwrap(),
        UpdateOutcome::Installed {
            from: Some(1),
            to: 2
        }
    );
    assert_eq!(
        state
            .update_from(&server.http("good"), &server.root())
            .unwrap(),
        UpdateOutcome::UpToDate { version: 2 }
    );
    let tls = server.sensor_with_v1("tls");
    let https = server.https("good", Some(&server.ca));
    assert_eq!(
        tuf::verify_at(&https, &server.root())
            .unwrap()
            .rules
            .version(),
        2
    );
    assert_eq!(
        tls.update_from(&https, &server.root()).unwrap(),
        UpdateOutcome::Installed {
            from: Some(1),
            to: 2
        }
    );
    // Without the private CA the server is not trusted.
    let untrusted = server.sensor_with_v1("untrusted");
    assert_one_line_error(
        untrusted.update_from(&server.https("good", None), &server.root()),
        "certificate",
    );
    assert_eq!(load_active(untrusted.path()).unwrap().version(), 1);
}

#[test]
fn faults_leave_installed_content_untouched_and_verify_says_why() {
    let server = server();
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        server.location(&format!("http://127.0.0.1:{port}/good/"), None)
    };
    let cases = [
        ("down", down, "connect"),
        ("slow", server.http("slow"), "timed out"),
        ("truncated", server.http("truncate"), "timestamp"),
        ("tampered", server.http("tampered"), "failed verification"),
    ];
    for (name, location, why) in cases {
        let state = server.sensor_with_v1(name);
        let pointer = std::fs::read(state.path().join("state.json")).unwrap();
        let started = Instant::now();
        assert_one_line_error(state.update_from(&location, &server.root()), why);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}: bounded ({:?})",
            started.elapsed()
        );
        assert_eq!(load_active(state.path()).unwrap().version(), 1, "{name}");
        assert_eq!(
            std::fs::read(state.path().join("state.json")).unwrap(),
            pointer,
            "{name}: state untouched"
        );
        assert_one_line_error(tuf::verify_at(&location, &server.root()), why);
    }

    // Rolled back: a sensor that installed v2 is served the older, validly signed repository.
    let state = server.sensor_with_v1("rolled-back");
    state
        .update_from(&server.http("good"), &server.root())
        .unwrap();
    assert_one_line_error(
        state.update_from(&server.http("old"), &server.root()),
        "previously fetched version 2",
    );
    assert_eq!(load_active(state.path()).unwrap().version(), 2);
}

/// Issue 24, N9: settings under which the `slow` repository (30 s per answer) would hold an
/// update for a long time: 20 s per request, one try, a 25 s deadline.
fn slow_location(server: &Server, deadline: Duration) -> RepoLocation {
    let settings = HttpSettings {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(20),
        tries: 1,
        deadline,
        ca_file: None,
    };
    RepoLocation::parse(
        format!("http://127.0.0.1:{}/slow/", server.http).as_ref(),
        &settings,
    )
}

/// N9: while an update waits on a slow repository, loading the content (a sensor start) and
/// `rollback` do not wait for it (they waited up to 91.5 s per file), and a `Stop` ends the
/// update at once.
#[test]
fn a_slow_repository_holds_no_lock_and_a_stop_ends_the_update() {
    let server = server();
    let state = server.sensor_with_v1("slow-lock");
    state
        .update_from(&server.http("good"), &server.root())
        .unwrap();
    let stop = fsense_content::update::Stop::new();
    let updating = {
        let (state, stop, root) = (state.clone(), stop.clone(), server.root());
        let location = slow_location(server, Duration::from_secs(25));
        std::thread::spawn(move || {
            state.update_stoppable(&location, &root, None, &stop, &mut |_| {})
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(load_active(state.path()).unwrap().version(), 2);
    assert_eq!(state.rollback().unwrap().to, Some(1));
    let blocked = started.elapsed();
    assert!(blocked < Duration::from_secs(3), "waited {blocked:?}");

    let stopping = Instant::now();
    stop.stop();
    let result = updating.join().unwrap();
    let stopped_in = stopping.elapsed();
    assert!(
        stopped_in < Duration::from_secs(1),
        "stopped in {stopped_in:?}"
    );
    assert_one_line_error(result, "stopped");
    assert_eq!(load_active(state.path()).unwrap().version(), 1);
    eprintln!(
        "N9: load+rollback during a slow update: {blocked:?}; stop to return: {stopped_in:?}"
    );
}

/// N9: one deadline bounds the whole update, whatever the per-request timeout and retries.
#[test]
fn one_deadline_bounds_a_whole_update() {
    let server = server();
    let state = server.sensor_with_v1("deadline");
    let started = Instant::now();
    assert_one_line_error(
        state.update_from(
            &slow_location(server, Duration::from_secs(1)),
            &server.root(),
        ),
        "deadline",
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(load_active(state.path()).unwrap().version(), 1);
}

/// N9 and N15: the live follower takes the HTTP settings (here the private CA), and its stopper
/// ends a check against a slow repository within a second (`watch` took 87 s to stop).
#[test]
fn the_follower_uses_the_ca_file_and_stops_promptly() {
    use fsense_content::reload::{Follower, Reload};
    let server = server();
    let settings = HttpSettings {
        ca_file: Some(server.ca.clone()),
        ..HttpSettings::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}/good/", server.https);
    let follower = Follower::new(
        &dir.path().join("state"),
        url.as_ref(),
        &server.root(),
        &settings,
    );
    let started = follower.start().unwrap();
    assert!(started.failure.is_none(), "{:?}", started.failure);
    assert_eq!(started.rules.unwrap().version(), 2);
    assert!(matches!(follower.check(), Reload::Unchanged));

    let slow = Follower::at(
        &dir.path().join("slow-state"),
        slow_location(server, Duration::from_secs(25)),
        &server.root(),
    );
    let stopper = slow.stopper();
    let checking = std::thread::spawn(move || slow.check());
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    stopper.stop();
    let result = checking.join().unwrap();
    let stopped_in = stopping.elapsed();
    assert!(
        matches!(result, Reload::Failed(ref e) if e.to_string().contains("stopped")),
        "{result:?}"
    );
    assert!(stopped_in < Duration::from_secs(1), "{stopped_in:?}");
}
