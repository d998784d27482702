//! Logging in, CSRF, sessions, escaping and the teachers' links, in chromium, against a journal
//! holding a campaign at step e whose names carry `<script>`.

use super::webdriver::Browser;
use super::{Console, anonymous, artefacts, log_in, wait_until};
use roomcast::campaign::journal::Journal;
use roomcast::campaign::run::campaign_dir;
use roomcast::console::signoff;
use roomcast_proto::procedure::{DeployMode, Event, Phase, Plan, Step, Timestamp};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const EVIL_PC: &str = "<script>alert('pc')</script>";
const EVIL_TEACHER: &str = "<script>alert('teacher')</script>";
const EVIL_SOFTWARE: &str = "<script>alert('software')</script>";
const EVIL_COMMENT: &str = "<script>alert('comment')</script>";
const CURIE: &str = "Mme Curie";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A campaign of room `room` that reached e (a–d journaled as succeeded), with its saved plan.
fn campaign_at_e(db: &Path, room: &str) -> i64 {
    let mut j = Journal::open(db).unwrap();
    let plan = Plan {
        room: room.into(),
        machines: vec!["PC01".into(), EVIL_PC.into()],
        master: "PC01".into(),
        mode: DeployMode::Image,
        retries: 0,
        signoff_required: true,
        signoff_allowed: vec![CURIE.into(), EVIL_TEACHER.into()],
    };
    let t = Timestamp(now() - 600);
    let (id, _) = j.start(&plan, t).unwrap();
    let mut state = j.state(id).unwrap();
    for step in [Step::Collect, Step::Master, Step::Install, Step::Tests] {
        state = j
            .record_on(id, 1, state, &Event::StepSucceeded { step }, t)
            .unwrap()
            .0;
    }
    assert_eq!(state.phase, Phase::At(Step::Signoff));
    let dir = campaign_dir(db, id);
    std::fs::create_dir_all(&dir).unwrap();
    let saved = json!({
        "bytes": {"installers": 1000, "installer_upload_seconds": 1.0, "image": null},
        "school": "Lycée <i>Test</i>", "uai": "0350001A", "profile": "b204@1",
        "software": [{"name": EVIL_SOFTWARE, "version": "1.0"}, {"name": "GeoGebra", "version": "6"}],
        "tests": [["geogebra starts", "true"]],
        "machines": [{"hostname": "PC01", "mac": "52:54:00:00:00:01"}]
    });
    std::fs::write(dir.join("plan.json"), saved.to_string()).unwrap();
    id
}

fn events(db: &Path, id: i64) -> usize {
    Journal::open(db).unwrap().events(id).unwrap().len()
}

fn body_text(b: &Browser) -> String {
    b.text_of("body")
}

#[test]
fn console_login_csrf_escaping_and_teachers_links_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roomcast.db");
    let id = campaign_at_e(&db, "B204<script>alert('room')</script>");
    let other = campaign_at_e(&db, "C105");
    let console = Console::start(dir.path(), &db, None);
    let key = std::fs::metadata(dir.path().join("console-key.pem")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        key.permissions().mode() & 0o777,
        0o600,
        "the generated key is private"
    );

    // Without a session: pages send to the login, the live stream and forms are refused.
    let anon = anonymous();
    let r = anon
        .get(&format!("{}/campaigns/{id}", console.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    let r = anon
        .get(&format!("{}/campaigns/{id}/live", console.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = anon
        .post(&format!("{}/campaigns/{id}/links", console.url))
        .content_type("application/x-www-form-urlencoded")
        .send("csrf=x")
        .unwrap();
    assert_eq!(r.status(), 403);

    let b = Browser::start();
    b.go(&format!("{}/campaigns", console.url));
    assert!(b.url().ends_with("/login"), "{}", b.url());
    // A wrong password is refused.
    b.type_in(&b.one("input[name=name]"), super::TECH);
    b.type_in(&b.one("input[name=password]"), "wrong");
    b.click(&b.one("form.login button"));
    wait_until("the refusal", Duration::from_secs(30), || {
        body_text(&b).contains("Wrong name or password")
    });
    log_in(&b, &console);
    let cookies = b.cookies();
    let session = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "__Host-roomcast")
        .unwrap_or_else(|| panic!("{cookies}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    // The technician's name, room and machine names holding markup are shown as text.
    assert!(body_text(&b).contains(super::TECH));
    assert!(body_text(&b).contains("B204<script>alert('room')</script>"));

    // A POST from the logged-in browser without the CSRF token, or with a wrong one: refused.
    for body in ["", "csrf=0000"] {
        let status = b.script_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0], {method: 'POST', body: arguments[1],
               headers: {'Content-Type': 'application/x-www-form-urlencoded'}})
               .then(r => done(r.status));",
            json!([format!("/campaigns/{id}/links"), body]),
        );
        assert_eq!(status, 403, "POST with body {body:?}");
    }
    assert!(
        signoff::links(&db, id).unwrap().is_empty(),
        "no link issued"
    );

    // The room page: names with <script> are text; the only script is the console's own.
    b.go(&format!("{}/campaigns/{id}", console.url));
    let names: Vec<String> = b.all(".tile .name").iter().map(|e| b.text(e)).collect();
    assert_eq!(names, vec!["PC01".to_string(), EVIL_PC.to_string()]);
    let scripts = b.script(
        "return Array.from(document.scripts).map(s => s.src);",
        json!([]),
    );
    assert_eq!(scripts, json!([format!("{}/static/live.js", console.url)]));

    // Issue the links with the form (its CSRF token), read them off the page.
    b.click(&b.one("form.links button"));
    wait_until("the links page", Duration::from_secs(30), || {
        body_text(&b).contains("Sign-off links of campaign")
    });
    let rows: Vec<(String, String)> = b
        .all("table tr")
        .iter()
        .skip(1)
        .map(|tr| {
            let t = b.text(tr);
            let link = t
                .split_whitespace()
                .find(|w| w.starts_with("https://"))
                .unwrap_or_default()
                .to_string();
            (t, link)
        })
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].0.starts_with(CURIE), "{rows:?}");
    assert!(
        rows[1].0.starts_with(EVIL_TEACHER),
        "shown as text: {rows:?}"
    );
    let curie = rows[0].1.clone();
    let evil_teacher = rows[1].1.clone();
    assert!(curie.starts_with(&format!("{}/signoff/", console.url)));

    // The teacher has no session: a new visitor.
    b.clear_cookies();
    let before = events(&db, id);
    // One character changed: refused.
    let mut forged = curie.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    b.go(&forged);
    assert!(body_text(&b).contains("not valid"), "{}", body_text(&b));
    // An expired link (issued 8 days ago for the other campaign, which lives 7 days): refused.
    let old = signoff::issue(&db, other, Timestamp(now() - 8 * 86_400), None, 7).unwrap();
    b.go(&format!("{}/signoff/{}", console.url, old[0].token));
    assert!(body_text(&b).contains("expired"), "{}", body_text(&b));
    // A link whose teacher is not (any more) on the room's list: refused.
    let stale = "ab".repeat(32);
    {
        use sha2::Digest;
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "INSERT INTO console_signoff_links (token_hash, campaign_id, teacher, issued_at, expires_at)
             VALUES (?1, ?2, 'M. Intrus', ?3, ?4)",
            rusqlite::params![hex::encode(sha2::Sha256::digest(stale.as_bytes())), id, now(), now() + 3600],
        )
        .unwrap();
    }
    b.go(&format!("{}/signoff/{stale}", console.url));
    assert!(
        body_text(&b).contains("M. Intrus is not on this room's sign-off list"),
        "{}",
        body_text(&b)
    );
    assert_eq!(events(&db, id), before, "nothing recorded");

    // The teacher's own link: the master's software (markup as text) and the tests' result.
    b.go(&curie);
    let text = body_text(&b);
    assert!(text.contains(CURIE), "{text}");
    assert!(text.contains(EVIL_SOFTWARE), "{text}");
    assert!(text.contains("every technical test passed"), "{text}");
    assert!(!text.contains(&evil_teacher), "no other person's link");
    std::fs::write(artefacts().join("signoff.png"), b.screenshot()).unwrap();
    // A forged form: a `by` field naming someone else changes nothing about who signs.
    b.click(&b.one("input[value=works]"));
    b.type_in(&b.one("textarea[name=comment]"), EVIL_COMMENT);
    b.script(
        "const i = document.createElement('input'); i.type = 'hidden'; i.name = 'by';
         i.value = 'M. Intrus'; document.querySelector('form.signoff').appendChild(i);",
        json!([]),
    );
    b.click(&b.one("form.signoff button"));
    wait_until("the answer", Duration::from_secs(30), || {
        body_text(&b).contains("Recorded")
    });
    let journal = Journal::open(&db).unwrap();
    let state = journal.state(id).unwrap();
    assert_eq!(events(&db, id), before + 1);
    assert_eq!(state.signoffs.len(), 1);
    assert_eq!(
        state.signoffs[0].by, CURIE,
        "signed under the link's teacher"
    );
    assert_eq!(state.signoffs[0].comment.as_deref(), Some(EVIL_COMMENT));
    assert_eq!(
        state.phase,
        Phase::At(Step::Capture),
        "on to f, as after resume"
    );

    // The same link again: refused, nothing recorded.
    b.go(&curie);
    assert!(body_text(&b).contains("already used"), "{}", body_text(&b));
    // The other teacher's link: the campaign no longer waits.
    b.go(&evil_teacher);
    assert!(body_text(&b).contains("not waiting"), "{}", body_text(&b));
    assert_eq!(events(&db, id), before + 1);

    // The journal and the report show the comment as text.
    log_in(&b, &console);
    b.go(&format!("{}/campaigns/{id}/journal", console.url));
    let text = body_text(&b);
    assert!(
        text.contains(&format!("e: signed off by {CURIE}: Ok ({EVIL_COMMENT})")),
        "{text}"
    );
    assert!(
        text.contains(EVIL_TEACHER),
        "the links table lists both: {text}"
    );
    b.go(&format!("{}/campaigns/{id}/report", console.url));
    let text = body_text(&b);
    assert!(
        text.contains(&format!("{CURIE} — ok: {EVIL_COMMENT}")),
        "{text}"
    );
    assert!(
        text.contains("School: Lycée <i>Test</i> (0350001A)"),
        "{text}"
    );
    let scripts = b.script("return document.scripts.length;", json!([]));
    assert_eq!(scripts, 0);
}

#[test]
fn console_links_in_the_terminal_rate_limited_logins_logged_and_resume_after_signoff() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roomcast.db");
    let id = campaign_at_e(&db, "B204");
    // The console resumes the campaign after a sign-off with the configured arguments.
    let console = Console::start_with(dir.path(), &db, None, "resume_args: [--parallel, '3']\n");

    // The campaign's run ends at its --until time: the links expire then (before 7 days).
    let until = Timestamp(now() + 3 * 3600);
    roomcast::campaign::run::save_deadline(&db, id, Some(until)).unwrap();
    // The terminal: one link per teacher, each with a QR code; issuing again replaces them.
    let links = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["console", "links", "--id", &id.to_string(), "--config"])
            .arg(dir.path().join("console.yaml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = links();
    let urls = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{}/signoff/", console.url)))
            .map(String::from)
            .collect()
    };
    assert_eq!(urls(&first).len(), 2, "{first}");
    assert!(
        first.contains(&format!("{CURIE} (until {until})")),
        "{first}"
    );
    assert!(
        first.contains('█') && first.contains('▀'),
        "a QR code: {first}"
    );
    let second = links();
    let anon = anonymous();
    let get = |url: &str| {
        let mut r = anon.get(url).call().unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    let (status, body) = get(&urls(&first)[0]);
    assert_eq!(status, 403, "a replaced link is refused");
    assert!(body.contains("not valid"), "{body}");
    let (status, body) = get(&urls(&second)[0]);
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains(&urls(&second)[1]),
        "no other person's link on a teacher's page"
    );

    // The teacher signs off (form token from the page); the console starts the resume.
    let csrf = super::form::csrf(&body);
    let post = |csrf: &str| {
        anon.post(&urls(&second)[0])
            .content_type("application/x-www-form-urlencoded")
            .send(format!("csrf={csrf}&verdict=works&comment=ok"))
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(""), 403, "no form token: refused");
    assert_eq!(events(&db, id), 5, "nothing recorded");
    assert_eq!(post(&csrf), 200);
    assert_eq!(events(&db, id), 6);
    let resume_log = campaign_dir(&db, id).join("console-resume.log");
    wait_until("the resume's log", Duration::from_secs(60), || {
        std::fs::read_to_string(&resume_log).is_ok_and(|l| !l.is_empty())
    });
    // This campaign was made by the test, not `campaign start`: the resume says so, naming it.
    let text = std::fs::read_to_string(&resume_log).unwrap();
    assert!(text.contains(&format!("campaign {id}")), "{text}");
    assert!(
        console
            .log
            .lock()
            .unwrap()
            .contains("campaign resumed after sign-off"),
        "{}",
        console.log.lock().unwrap()
    );

    // Five wrong passwords, then even the right one is refused for a while; each attempt logged
    // with the name, never the password.
    let login = |password: &str| super::post_login(&anon, &console.url, super::TECH, password);
    for _ in 0..5 {
        assert_eq!(login("wrong-pw-123"), 401);
    }
    assert_eq!(login(super::PASSWORD), 429, "rate limited");
    // The console's log reaches us through a pipe: wait for the refusal's line.
    wait_until("the refusal in the log", Duration::from_secs(30), || {
        console.log.lock().unwrap().contains("rate limited")
    });
    let log = console.log.lock().unwrap().clone();
    assert_eq!(log.matches("console login failed").count(), 5, "{log}");
    assert!(
        !log.contains("wrong-pw-123"),
        "no password in the log: {log}"
    );
}
