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

    // The technician opens the room page once, before the sign-off, and marks it: a reload would
    // lose the mark. A MutationObserver notes every tile as the live script changes it.
    b.go(&format!("{}/campaigns/{id}", console.url));
    assert_eq!(b.all(".tile").len(), 4, "one tile per PC");
    b.script(
        "window.__loadedOnce = true; window.__seen = [];
         const room = document.getElementById('room');
         new MutationObserver(() => room.querySelectorAll('.tile').forEach(t =>
             window.__seen.push(t.dataset.name + '|' + t.querySelector('.step').textContent
                 + '|' + t.querySelector('.state').textContent)))
           .observe(room, {subtree: true, childList: true, characterData: true});",
        json!([]),
    );

    // The teacher, in her own browser and without a session, opens her link and signs off.
    let teacher = Browser::start();
    teacher.go(&link);
    assert!(teacher.text_of("body").contains(SIGNER));
    std::fs::write(artefacts().join("signoff-lab.png"), teacher.screenshot()).unwrap();
    teacher.click(&teacher.one("input[value=works]"));
    teacher.type_in(
        &teacher.one("textarea[name=comment]"),
        "GeoGebra et le tableur marchent.",
    );
    teacher.click(&teacher.one("form.signoff button"));
    wait_until("the answer", Duration::from_secs(30), || {
        teacher.text_of("body").contains("Recorded")
    });
    drop(teacher);

    // The campaign goes on by itself: f, then g. The technician's page follows without reload.
    let seen = |b: &Browser| -> Vec<String> {
        serde_json::from_value(b.script("return window.__seen;", json!([]))).unwrap()
    };
    let mut shot = false;
    wait_until("the tiles to reach h", Duration::from_secs(900), || {
        let s = seen(&b);
        if !shot && s.iter().any(|t| t.ends_with("|g:deploy|running")) {
            shot = true;
            std::fs::write(artefacts().join("room-g.png"), b.screenshot()).unwrap();
        }
        s.iter().any(|t| t.contains("|h:join|"))
    });
    let s = seen(&b);
    let g_running: Vec<&String> = s
        .iter()
        .filter(|t| t.ends_with("|g:deploy|running"))
        .collect();
    assert!(!g_running.is_empty(), "a tile showed g running: {s:?}");
    let pc = g_running[0].split('|').next().unwrap();
    let after = s
        .iter()
        .skip_while(|t| !t.ends_with("|g:deploy|running"))
        .any(|t| t.starts_with(&format!("{pc}|")) && !t.ends_with("|g:deploy|running"));
    assert!(after, "{pc}'s tile changed again after g started: {s:?}");
    assert_eq!(
        b.script("return window.__loadedOnce === true;", json!([])),
        true,
        "the tiles changed without a reload"
    );
    std::fs::write(artefacts().join("room.png"), b.screenshot()).unwrap();
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

    // The images page: the captured image, its signer, its signature verified, the room using it.
    b.go(&format!("{}/images", console.url));
    let image = state.image.clone().expect("an image captured at f");
    let row = b
        .all("table tr")
        .into_iter()
        .map(|tr| b.text(&tr))
        .find(|t| t.contains(&image[..12]))
        .unwrap_or_else(|| panic!("{image} not listed: {}", b.text_of("body")));
    assert!(
        row.contains("signature verified") && row.contains("DEMO"),
        "{row}"
    );
    std::fs::write(artefacts().join("images.png"), b.screenshot()).unwrap();
    // The inventory: the room's machines with their last image and intervention.
    b.go(&format!("{}/inventory?room=DEMO", console.url));
    let row = b
        .all("table tr")
        .into_iter()
        .map(|tr| b.text(&tr))
        .find(|t| t.starts_with("DEMO-PC02"))
        .unwrap_or_else(|| panic!("DEMO-PC02 not listed: {}", b.text_of("body")));
    assert!(row.contains(&image[..12]), "its last image: {row}");
    std::fs::write(artefacts().join("inventory.png"), b.screenshot()).unwrap();
}
