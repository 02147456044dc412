//! `--sink tls://...` with `--nats-ca-file` and `--nats-creds` against a real `nats-server` in
//! operator mode on loopback, and what a wrong CA or bad credentials do.
#![cfg(all(feature = "nats", target_os = "linux"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

mod nats_support;
use nats_support::*;

/// A server that takes only TLS (certificate from a CA made here) and only users of the one
/// account its operator signed (operator mode, JWTs made here): what `tls://`, `--nats-ca-file`
/// and `--nats-creds` meet in a fleet.
struct Secure {
    server: Server,
    ca: PathBuf,
    /// A CA that did not sign the server's certificate.
    other_ca: PathBuf,
    creds: PathBuf,
    /// A user of an account the server does not know.
    stranger_creds: PathBuf,
    _dir: tempfile::TempDir,
}

fn openssl(args: &[&str], dir: &Path) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

/// `ca.pem` (and its key), a certificate for 127.0.0.1 it signed, and an unrelated `other-ca.pem`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for (ca, name) in [("ca", "fsense test CA"), ("other-ca", "some other CA")] {
        let (key, pem, subj) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN={name}"),
        );
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-days", "2", "-subj", &subj, "-keyout", &key, "-out", &pem]);
        openssl(&a, dir);
    }
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(&a, dir);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
        dir,
    );
}

/// A NATS JWT (ed25519-nkey) with `claims` under `nats`, issued by `issuer` about `subject`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, claims: Value) -> String {
    let b64 = data_encoding::BASE64URL_NOPAD;
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = serde_json::json!({
        "jti": format!("{name}-{}", &subject[..12]).to_uppercase(),
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": claims,
    });
    let signed = format!("{header}.{}", b64.encode(body.to_string().as_bytes()));
    let signature = b64.encode(&issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

/// A `.creds` file as `nsc` writes it: a user JWT signed by `account`, and the user's seed.
fn user_creds(account: &nkeys::KeyPair) -> String {
    let user = nkeys::KeyPair::new_user();
    let claims = serde_json::json!({
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
        "issuer_account": account.public_key(), "type": "user", "version": 2,
    });
    let token = jwt(account, &user.public_key(), "fsense", claims);
    format!(
        "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    )
}

/// A file with a secret: mode 0600, as `--nats-creds` requires.
fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn secure() -> &'static Secure {
    static SECURE: OnceLock<Secure> = OnceLock::new();
    SECURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_certificates(d);
        let operator = nkeys::KeyPair::new_operator();
        let account = nkeys::KeyPair::new_account();
        let operator_jwt = jwt(
            &operator,
            &operator.public_key(),
            "fsense-test",
            serde_json::json!({"type": "operator", "version": 2}),
        );
        // JetStream is on for an account whose limits give it storage.
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let account_jwt = jwt(
            &operator,
            &account.public_key(),
            "FLEET",
            serde_json::json!({
                "limits": unlimited,
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account", "version": 2,
            }),
        );
        // JetStream needs a system account.
        let system = nkeys::KeyPair::new_account();
        let system_jwt = jwt(
            &operator,
            &system.public_key(),
            "SYS",
            serde_json::json!({"type": "account", "version": 2}),
        );
        std::fs::write(d.join("operator.jwt"), operator_jwt).unwrap();
        let creds = d.join("user.creds");
        write_private(&creds, &user_creds(&account));
        let stranger_creds = d.join("stranger.creds");
        write_private(&stranger_creds, &user_creds(&nkeys::KeyPair::new_account()));
        let port = free_port();
        let conf = d.join("server.conf");
        let p = |f: &str| d.join(f).to_str().unwrap().to_string();
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{port}\"\nserver_name: secure\n\
                 operator: \"{}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
                 resolver_preload: {{\n  {}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n\
                 jetstream: {{ store_dir: \"{}\" }}\n\
                 tls: {{ cert_file: \"{}\", key_file: \"{}\", timeout: 5 }}\n",
                p("operator.jwt"),
                account.public_key(),
                p("js"),
                p("server.pem"),
                p("server.key"),
                sys = system.public_key(),
            ),
        )
        .unwrap();
        let check = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .arg("-t")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            stderr(&check)
        );
        let server = Server {
            child: None,
            args: vec!["-c".into(), conf.to_str().unwrap().into()],
            port,
            name: "secure".into(),
            _store: None,
            guard: None,
        }
        .start_guarded();
        Secure {
            server,
            ca: d.join("ca.pem"),
            other_ca: d.join("other-ca.pem"),
            creds,
            stranger_creds,
            _dir: dir,
        }
    })
}

impl Secure {
    fn url(&self, subject: &str) -> String {
        format!("tls://127.0.0.1:{}/{subject}", self.server.port)
    }

    fn read_stream(&self, stream: &str) -> Vec<String> {
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
        runtime().block_on(async {
            let client = async_nats::ConnectOptions::with_credentials_file(&self.creds)
                .await
                .unwrap()
                .require_tls(true)
                .add_root_certificates(self.ca.clone())
                .connect(format!("tls://127.0.0.1:{}", self.server.port))
                .await
                .unwrap();
            read_all(client, stream).await.unwrap()
        })
    }
}

fn secure_args(url: &str, stream: &str, ca: &Path, creds: &Path, sum: &Path) -> Vec<String> {
    let mut args = replay_args(&capture(2_000), url, stream, sum);
    args.extend([
        "--nats-ca-file".into(),
        ca.to_str().unwrap().into(),
        "--nats-creds".into(),
        creds.to_str().unwrap().into(),
    ]);
    args
}

#[test]
fn tls_with_a_ca_file_and_a_creds_file_delivers_every_event() {
    let s = secure();
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    run_ok(&secure_args(
        &s.url("t.secure"),
        "T_SECURE",
        &s.ca,
        &s.creds,
        &sum,
    ));
    let r = summary(&sum);
    let reported = r["reported"].as_u64().unwrap();
    assert!(reported > 0, "{r}");
    assert_eq!(r["sink"]["acknowledged"], reported, "{r}");
    assert_one_per_event(&s.read_stream("T_SECURE"), reported);
}

#[test]
fn a_wrong_ca_or_bad_creds_is_one_line_then_spooling() {
    let s = secure();
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    for (what, ca, creds, wording) in [
        ("wrong CA", &s.other_ca, &s.creds, "TLS handshake refused"),
        (
            "unknown account",
            &s.ca,
            &s.stranger_creds,
            "authorization violation",
        ),
    ] {
        let mut args = secure_args(&s.url("t.refused"), "T_REFUSED", ca, creds, &sum);
        args.extend(["--sink-drain-secs".into(), "1".into()]);
        let o = run_ok(&args);
        let e = stderr(&o);
        assert_eq!(e.matches(wording).count(), 1, "{what}: {e}");
        assert!(!e.contains("cannot reach"), "{what}: {e}");
        assert_eq!(
            e.matches("NATS").count(),
            2,
            "{what}: one line, then the end: {e}"
        );
        let r = summary(&sum);
        assert_eq!(r["sink"]["acknowledged"], 0, "{what}: {r}");
        assert_eq!(r["sink"]["spooled"], r["reported"], "{what}: {r}");
    }
}

#[test]
fn an_unreadable_or_malformed_creds_or_ca_file_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage");
    write_private(&garbage, "not a creds file, not a certificate\n");
    let missing = dir.path().join("missing");
    let ca = dir.path().join("ca.pem");
    make_certificates(dir.path());
    let creds = dir.path().join("user.creds");
    write_private(&creds, &user_creds(&nkeys::KeyPair::new_account()));
    let url = format!("tls://127.0.0.1:{}/t.bad", free_port());
    for (what, ca, creds) in [
        ("malformed creds", &ca, &garbage),
        ("missing creds", &ca, &missing),
        ("malformed CA", &garbage, &creds),
        ("missing CA", &missing, &creds),
    ] {
        let o = fsense(
            &secure_args(&url, "T_BAD", ca, creds, &dir.path().join("s.json"))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {e}");
        assert_eq!(e.lines().count(), 1, "{what}: {e}");
        assert!(e.starts_with("error: "), "{what}: {e}");
    }
}

fn no_panic(e: &str) {
    assert!(!e.contains("panicked"), "{e}");
    assert!(!e.contains('\x1b'), "raw escape on stderr: {e}");
}

/// N1: a `nats://` sink to a server that requires TLS aborted the whole sensor (rustls had no
/// crypto provider chosen; exit 134). Now: one line saying so, events spooled, exit 0.
#[test]
fn a_nats_url_to_a_tls_only_server_is_one_line_not_a_crash() {
    let s = secure();
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let url = format!("nats://127.0.0.1:{}/t.plain", s.server.port);
    let mut args = replay_args(&capture(2_000), &url, "T_PLAIN", &sum);
    args.extend(["--sink-drain-secs".into(), "1".into()]);
    let o = fsense(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let e = stderr(&o);
    assert!(o.status.success(), "{:?}: {e}", o.status);
    no_panic(&e);
    assert_eq!(e.matches("requires TLS").count(), 1, "{e}");
    let r = summary(&sum);
    assert_eq!(r["sink"]["spooled"], r["reported"], "{r}");
}

/// N1, reproduction B: a running sensor whose server starts asking for TLS at a reconnect
/// (`fakenats.py tlsflip`) aborted after 2 s. Now the watch goes on, with one line.
#[test]
fn a_server_that_asks_for_tls_after_a_reconnect_does_not_stop_the_sensor() {
    let plain = shared();
    let s = secure();
    let flip = fake::Flip::start(plain.port, s.server.port, Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let url = format!("nats://127.0.0.1:{}/t.flip", flip.port);
    let mut args = simulate_args(&url, "T_FLIP", 1_500, &sum);
    // Paced, so the run outlasts the first connection: 3 s.
    let rate = args.iter().position(|a| a == "--rate").unwrap() + 1;
    args[rate] = "500".into();
    args.extend(["--sink-drain-secs".into(), "1".into()]);
    let o = run_sim(&args);
    let e = stderr(&o);
    no_panic(&e);
    assert_eq!(e.matches("requires TLS").count(), 1, "{e}");
    let r = summary(&sum);
    let acked = r["sink"]["acknowledged"].as_u64().unwrap();
    assert!(acked > 0, "the first connection delivered: {r}");
    assert!(r["sink"]["spooled"].as_u64().unwrap() > 0, "{r}");
}

/// N7: a server's error text carried escape sequences to stderr raw.
#[test]
fn a_servers_text_reaches_stderr_escaped() {
    let f = fake::Fake::start(fake::Mode::EscapeErr);
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let mut args = replay_args(&capture(2_000), &f.url("t.esc"), "T_ESC", &sum);
    args.extend(["--sink-drain-secs".into(), "1".into()]);
    let o = run_ok(&args);
    let e = stderr(&o);
    no_panic(&e);
    assert!(e.contains("\\u{1b}]0;PWNED-NATS\\u{7}"), "{e}");
}

/// A peer's bytes that make the NATS client panic (a MSG declaring 2^64-1 bytes overflows its
/// size check) aborted the sensor; now the publisher is started again and counted.
#[test]
fn a_client_panic_on_hostile_input_restarts_the_publisher_not_the_sensor() {
    let f = fake::Fake::start(fake::Mode::HugeDeclaredMsg);
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let mut args = replay_args(&capture(2_000), &f.url("t.huge"), "T_HUGE", &sum);
    args.extend(["--sink-drain-secs".into(), "2".into()]);
    let o = fsense(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let e = stderr(&o);
    assert!(o.status.success(), "{:?}: {e}", o.status);
    no_panic(&e);
    assert_eq!(e.matches("publisher failed").count(), 1, "{e}");
    let r = summary(&sum);
    assert!(
        r["sink"]["publisher_restarts"].as_u64().unwrap() >= 1,
        "{r}"
    );
    assert_eq!(r["sink"]["spooled"], r["reported"], "{r}");
    assert!(f.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

/// N11: the URL password was printed; a creds file others can read was used silently.
#[test]
fn passwords_are_never_printed_and_an_open_creds_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let url = format!(
        "nats://fsense:S3cretPassw0rd@127.0.0.1:{}/t.pw",
        free_port()
    );
    let mut args = replay_args(&capture(2_000), &url, "T_PW", &sum);
    args.extend(["--sink-drain-secs".into(), "1".into()]);
    let e = stderr(&run_ok(&args));
    assert!(
        !e.contains("S3cret") && e.contains("fsense:***@127.0.0.1"),
        "{e}"
    );
    let bad = "nats://fsense:S3cretPassw0rd@127.0.0.1:1/bad subject";
    let o = fsense(&["replay", capture(2_000).to_str().unwrap(), "--sink", bad]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains("S3cret"), "{}", stderr(&o));

    let creds = dir.path().join("open.creds");
    std::fs::write(&creds, user_creds(&nkeys::KeyPair::new_account())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut args = replay_args(&capture(2_000), &url, "T_PW", &sum);
    args.extend(["--nats-creds".into(), creds.to_str().unwrap().into()]);
    let o = fsense(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("refusing --nats-creds") && e.contains("0644"),
        "{e}"
    );
}

/// The highest resident set size of process `pid` so far, in KiB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// N8: a server answering with `MSG ... 1610612736` and that many bytes made the sensor hold
/// them all (maxrss 1.58 GB). Now the connection is dropped past a bound, said in one line.
#[test]
fn a_huge_message_from_the_server_is_cut_at_a_bound() {
    let f = fake::Fake::start(fake::Mode::HugeMsg);
    let dir = tempfile::tempdir().unwrap();
    let sum = dir.path().join("sum.json");
    let mut args = replay_args(&capture(2_000), &f.url("t.big"), "T_BIG", &sum);
    args.extend(["--sink-drain-secs".into(), "3".into()]);
    let mut child = spawn(&args);
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(peak_rss_kb(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = finish(child);
    no_panic(&e);
    eprintln!("peak RSS {peak} kB");
    assert!(e.contains("without completing a message"), "{e}");
    assert!(peak < 300_000, "peak RSS {peak} kB: {e}");
}
