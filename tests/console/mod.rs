//! The web console in a real browser (Debian's chromium through chromedriver, WebDriver over
//! HTTP): the console is the real `roomcast console serve` over HTTPS on 127.0.0.1 (loopback, not
//! a room network), reading the journal a campaign writes.

mod form;
mod ldap;
mod live;
mod security;
mod webdriver;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `roomcast console serve`, killed on drop.
pub struct Console {
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// What it logged (stderr) so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The technician the tests log in as, and the password (hashed into the config).
pub const TECH: &str = "tech<b>";
pub const PASSWORD: &str = "s3cret pw";

/// Hashes a password with `roomcast console hash-password` (stdin).
pub fn hash(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["console", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Console {
    /// Writes a config in `dir` for `db` (and `store`) and starts the console on a free port.
    pub fn start(dir: &Path, db: &Path, store: Option<&Path>) -> Console {
        Console::start_with(dir, db, store, "")
    }

    /// [`Console::start`] with more YAML appended to the config.
    pub fn start_with(dir: &Path, db: &Path, store: Option<&Path>, extra: &str) -> Console {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("https://127.0.0.1:{port}");
        let mut yaml = format!(
            "listen: 127.0.0.1:{port}\ndb: {}\npublic_url: {url}\ntechnicians:\n  - name: \"{TECH}\"\n    password_hash: \"{}\"\n",
            db.display(),
            hash(PASSWORD)
        );
        if let Some(s) = store {
            yaml.push_str(&format!("store: {}\n", s.display()));
        }
        yaml.push_str(extra);
        let config = dir.join("console.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["console", "serve", "--config"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = listening_log(&mut child);
        Console { child, url, log }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that accepts the console's self-signed certificate, keeps no cookie and
/// follows no redirect (to see what an anonymous request gets).
/// Waits for a started `roomcast console serve`'s first line ("console listening on https://…"),
/// then keeps draining its log (so it never blocks on a full pipe) into the string returned.
pub fn listening_log(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("console listening on https://"), "{first}");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    log
}

/// Submits the login form as a browser would: `GET /login` for its cookie and CSRF token, then a
/// form-encoded POST of `name` and `password`. The answer's status.
pub fn post_login(agent: &ureq::Agent, url: &str, name: &str, password: &str) -> u16 {
    form::log_in(agent, url, name, password).0
}

pub fn anonymous() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(true)
                .build(),
        )
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Where the tests leave their screenshots (copied by hand into docs/console/).
pub fn artefacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Logs the technician in through the login form.
pub fn log_in(b: &webdriver::Browser, console: &Console) {
    b.go(&format!("{}/login", console.url));
    b.type_in(&b.one("input[name=name]"), TECH);
    b.type_in(&b.one("input[name=password]"), PASSWORD);
    b.click(&b.one("form.login button"));
    b.wait_for("the campaigns page", Duration::from_secs(30), || {
        b.url().ends_with("/campaigns").then_some(())
    });
}

/// Polls until `f` holds (bounded; panics naming `what`).
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
