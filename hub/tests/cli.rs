//! The `hub` binary as a user runs it: the demo, device management, export.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn hub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hub"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Wait for a line of the child's stdout containing `needle`; returns it.
fn wait_for_line(child: &mut Child, needle: &str, within: Duration) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(_) => panic!("no line containing {needle:?} within {within:?}"),
        }
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "hub did not exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` over HTTP/1.0 with an optional cookie; the whole answer as text.
fn raw_get(port: u16, path: &str, cookie: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    write!(
        tcp,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{cookie}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}

fn stored_batches(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open db");
    conn.query_row("SELECT count(*) FROM batches", [], |r| r.get(0))
        .expect("count batches")
}

#[tokio::test]
async fn demo_prints_its_address_streams_live_readings_within_5_s_and_stores_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let port = free_port();
    let mut child = hub()
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            db.to_str().unwrap(),
            "--devices",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hub demo");
    // The demo prints its address, then a one-time login link for it.
    let line = wait_for_line(&mut child, "login/once?token=", Duration::from_secs(20));
    let link = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no link in {line:?}"));
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/login/once?token=")),
        "demo printed {line:?}"
    );
    let path = &link[format!("http://127.0.0.1:{port}").len()..];
    let answer = raw_get(port, path, "");
    assert!(answer.starts_with("HTTP/1.0 303"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("the link sets a session cookie")
        .to_owned();
    assert!(
        raw_get(port, path, "").starts_with("HTTP/1.0 401"),
        "a one-time link works once"
    );
    assert!(raw_get(port, "/api/devices", &cookie).starts_with("HTTP/1.0 200"));

    let started = Instant::now();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://127.0.0.1:{port}/ws/live"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request.headers_mut().insert(
        "origin",
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    );
    let (mut live, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("live socket");
    let mut readings = 0;
    while readings == 0 {
        let msg = tokio::time::timeout(
            Duration::from_secs(5).saturating_sub(started.elapsed()),
            live.next(),
        )
        .await
        .expect("a live reading within 5 s");
        if let Some(Ok(Message::Text(text))) = msg {
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if v["type"] == "readings" {
                readings += v["points"].as_array().map_or(0, Vec::len);
            }
        }
    }
    drop(live);
    // Acks come after commits (1 s by default); give the store a commit or two.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = terminate(&mut child);
    assert!(status.success(), "hub exited with {status}");
    assert!(stored_batches(&db) > 0, "the demo stored nothing");

    // What was stored comes back out as CSV, one row per reading.
    let csv = dir.path().join("out.csv");
    let out = hub()
        .args([
            "export",
            "--db",
            db.to_str().unwrap(),
            "--out",
            csv.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("device,sensor,ts_ms,iso_time,value,time_source")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.starts_with("demo-0") && r.ends_with(",sntp")),
        "{rows:?}"
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let readings: i64 = conn
        .query_row("SELECT sum(count) FROM batches", [], |r| r.get(0))
        .unwrap_or(-1);
    assert_eq!(
        rows.len() as i64,
        readings,
        "CSV rows vs readings in the batches table"
    );
}

#[test]
fn device_add_prints_a_token_once_list_shows_it_and_revoke_marks_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let db = db.to_str().unwrap();
    let out = hub()
        .args(["device", "add", "greenhouse-1", "--db", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap().trim();
    assert_eq!(token.len(), 64, "token line: {token:?}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    // The database holds only the hash.
    let conn = rusqlite::Connection::open(db).unwrap();
    let hash: String = conn
        .query_row(
            "SELECT token_hash FROM devices WHERE name = 'greenhouse-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(hash, token);
    assert_eq!(hash, hub::auth::hash_token(token));
    drop(conn);

    let again = hub()
        .args(["device", "add", "greenhouse-1", "--db", db])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let list = hub().args(["device", "list", "--db", db]).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("greenhouse-1") && l.contains("active")),
        "{list}"
    );

    assert!(
        hub()
            .args(["device", "revoke", "greenhouse-1", "--db", db])
            .status()
            .unwrap()
            .success()
    );
    let list = String::from_utf8(
        hub()
            .args(["device", "list", "--db", db])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("greenhouse-1") && l.contains("revoked")),
        "{list}"
    );

    let missing = hub()
        .args(["device", "revoke", "nope", "--db", db])
        .output()
        .unwrap();
    assert!(!missing.status.success());
}

#[test]
fn users_are_added_listed_rekeyed_and_removed_and_passwords_stay_out_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let db = db.to_str().unwrap();
    let run = |args: &[&str], password: Option<&str>| {
        let mut cmd = hub();
        cmd.args(args).args(["--db", db]).env_remove("HUB_PASSWORD");
        if let Some(p) = password {
            cmd.env("HUB_PASSWORD", p);
        }
        cmd.output().unwrap()
    };
    let out = run(&["user", "add", "ada"], Some("correct horse battery"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(db).unwrap();
    let hash: String = conn
        .query_row(
            "SELECT password_hash FROM users WHERE name = 'ada'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    drop(conn);

    let again = run(&["user", "add", "ada"], Some("another password"));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let short = run(&["user", "add", "bob"], Some("short"));
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8"));
    // The password from standard input when HUB_PASSWORD is not set.
    let mut child = hub()
        .args(["user", "add", "cy", "--db", db])
        .env_remove("HUB_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped password\n")
            .unwrap();
    }
    assert!(child.wait_with_output().unwrap().status.success());

    let list = String::from_utf8(run(&["user", "list"], None).stdout).unwrap();
    assert!(list.lines().any(|l| l.starts_with("ada")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("cy")), "{list}");
    assert!(
        run(&["user", "passwd", "ada"], Some("a new password"))
            .status
            .success()
    );
    assert!(run(&["user", "remove", "ada"], None).status.success());
    let gone = run(&["user", "remove", "ada"], None);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no user named"));
}

#[test]
fn bad_flags_get_a_clear_error_not_a_panic() {
    let out = hub().args(["serve", "--commit-ms", "0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--commit-ms"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for (args, says) in [
        (&["serve", "--tls-cert", "x.pem"][..], "--tls-key"),
        (
            &["serve", "--allow-origin", "evil.example"][..],
            "not an origin",
        ),
        (
            &["serve", "--max-connections-per-ip", "0"][..],
            "at least 1",
        ),
        (
            &["serve", "--rate-limit-factor", "NaN"][..],
            "--rate-limit-factor",
        ),
        (&["serve", "--session-ttl", "soon"][..], "--session-ttl"),
    ] {
        let out = hub().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = hub()
        .args(["export", "--from", "yesterday", "--db", "/nonexistent/x.db"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
