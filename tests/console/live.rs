//! A whole campaign in the virtual room (`roomcast demo --wait-signoff`: namespaces, OpenSSH PCs,
//! a Samba AD DC, real agents restoring by multicast) followed in chromium through the console:
//! the technician issues the links at e, the teacher signs off from hers, the campaign goes on by
//! itself to f, g and h, and the room page's tiles change while g runs without a reload.

use super::webdriver::Browser;
use super::{Console, artefacts, log_in, wait_until};
use roomcast::campaign::journal::Journal;
use roomcast_proto::procedure::{Phase, Step};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SIGNER: &str = "Mme Martin (professeure)";

/// The demo process; stopped with SIGTERM on drop (it then removes its virtual room).
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on the pid of our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

fn phase(db: &std::path::Path) -> Option<Phase> {
    let j = Journal::open(db).ok()?;
    let id = j.latest().ok()??;
    Some(j.state(id).ok()?.phase)
}

#[test]
fn console_follows_a_lab_campaign_live_and_a_teacher_signs_off_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let log = std::fs::File::create(dir.path().join("demo.log")).unwrap();
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["demo", "--pcs", "4", "--wait-signoff", "900", "--dir"])
            .arg(&ws)
            .env_remove("ROOMCAST_STORE")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let db = ws.join("roomcast.db");
    let demo_log = || std::fs::read_to_string(dir.path().join("demo.log")).unwrap_or_default();
    wait_until("the campaign to reach e", Duration::from_secs(900), || {
        if let Ok(Some(status)) = demo.0.try_wait() {
            panic!("demo ended early ({status}):\n{}", demo_log());
        }
        phase(&db) == Some(Phase::At(Step::Signoff))
    });

    let console = Console::start(dir.path(), &db, Some(&ws.join("store")));
    let b = Browser::start();
    log_in(&b, &console);
    let id = Journal::open(&db).unwrap().latest().unwrap().unwrap();
    b.go(&format!("{}/campaigns/{id}", console.url));
    b.click(&b.one("form.links button"));
    wait_until("the links page", Duration::from_secs(30), || {
        b.text_of("body").contains("Sign-off links of campaign")
    });
    let row = b
        .all("table tr")
        .into_iter()
        .map(|tr| b.text(&tr))
        .find(|t| t.starts_with(SIGNER))
        .unwrap_or_else(|| panic!("no link for {SIGNER}: {}", b.source()));
    let link = row
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap()
        .to_string();

    // The teacher, without a session, opens her link and signs off.
    b.clear_cookies();
    b.go(&link);
    assert!(b.text_of("body").contains(SIGNER));
    std::fs::write(artefacts().join("signoff-lab.png"), b.screenshot()).unwrap();
    b.click(&b.one("input[value=works]"));
    b.type_in(
        &b.one("textarea[name=comment]"),
        "GeoGebra et le tableur marchent.",
    );
    b.click(&b.one("form.signoff button"));
    wait_until("the answer", Duration::from_secs(30), || {
        b.text_of("body").contains("Recorded")
    });

    // The technician watches the room: the page is loaded once, marked, never reloaded.
    log_in(&b, &console);
    b.go(&format!("{}/campaigns/{id}", console.url));
    b.script("window.__loadedOnce = true;", json!([]));
    let states =
        |b: &Browser| -> Vec<String> { b.all(".tile .state").iter().map(|e| b.text(e)).collect() };
    let first = states(&b);
    assert_eq!(first.len(), 4, "one tile per PC: {first:?}");
    let mut seen_running = false;
    wait_until("a tile to turn ok at g", Duration::from_secs(900), || {
        let now = states(&b);
        if !seen_running && now.iter().any(|s| s == "running") {
            seen_running = true;
            std::fs::write(artefacts().join("room-running.png"), b.screenshot()).unwrap();
        }
        now.iter().any(|s| s == "ok")
    });
    std::fs::write(artefacts().join("room.png"), b.screenshot()).unwrap();
    assert_eq!(
        b.script("return window.__loadedOnce === true;", json!([])),
        true,
        "the tiles changed without a reload"
    );
    let status = demo.0.wait().unwrap();
    assert!(status.success(), "{}", demo_log());
    assert_eq!(phase(&db), Some(Phase::Finished), "{}", demo_log());
    let state = Journal::open(&db).unwrap().state(id).unwrap();
    assert_eq!(state.signoffs[0].by, SIGNER);

    // The morning report: bytes and rate per PC at g from the agents' reports, the image's facts.
    b.go(&format!("{}/campaigns/{id}/report", console.url));
    let text = b.text_of("body");
    assert!(text.contains("Image: "), "{text}");
    assert!(text.contains("signed by"), "{text}");
    assert!(text.contains("/s"), "a rate per PC: {text}");
    std::fs::write(artefacts().join("report.png"), b.screenshot()).unwrap();
}
