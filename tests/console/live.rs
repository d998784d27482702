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
            // Links of 40 Mbit/s and 24 MiB of random bytes in the image: a step g of several
            // seconds, long enough for the PCs' progress to show; the last PC loses 5 % of the
            // stream, so the chart's loss is not flat.
            .args(["demo", "--pcs", "4", "--wait-signoff", "900"])
            .args([
                "--link-mbit",
                "40",
                "--payload-mib",
                "24",
                "--loss-pct",
                "5",
                "--dir",
            ])
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
        "window.__loadedOnce = true; window.__seen = []; window.__bytes = []; window.__left = [];
         const room = document.getElementById('room');
         new MutationObserver(() => {
           window.__left.push(document.getElementById('time-left').textContent);
           room.querySelectorAll('.tile').forEach(t => {
             const st = t.querySelector('.step').textContent + '|'
                 + t.querySelector('.state').textContent;
             window.__seen.push(t.dataset.name + '|' + st);
             if (st === 'g:deploy|running')
               window.__bytes.push(t.dataset.name + '|' + t.querySelector('.bytes').textContent
                   + '|' + t.querySelector('.rate').textContent);
           });
         }).observe(room, {subtree: true, childList: true, characterData: true});",
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
        let showing_progress = || {
            b.script(
                "return window.__bytes.some(p => p.indexOf(' of ') > 0);",
                json!([]),
            ) == json!(true)
        };
        if !shot && s.iter().any(|t| t.ends_with("|g:deploy|running")) && showing_progress() {
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
    // While g ran, the tiles showed each PC's progress (from its agent, before its report): for
    // some PC, the bytes written grew at least twice, each time with a rate, without a reload.
    let progress: Vec<String> =
        serde_json::from_value(b.script("return window.__bytes;", json!([]))).unwrap();
    let grew = |pc: &str| -> Vec<(f64, String)> {
        let mut values: Vec<(f64, String)> = Vec::new();
        for p in progress.iter().filter(|p| p.starts_with(&format!("{pc}|"))) {
            let mut f = p.split('|').skip(1);
            let (bytes, rate) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let Some(done) = bytes.split(" of ").next().and_then(parse_bytes) else {
                continue;
            };
            if !bytes.contains(" of ") || !rate.ends_with("/s") {
                continue;
            }
            if values.last().is_none_or(|(v, _)| *v != done) {
                values.push((done, rate.to_string()));
            }
        }
        values
    };
    let best = s
        .iter()
        .filter_map(|t| t.split('|').next())
        .map(|pc| (pc.to_string(), grew(pc)))
        .max_by_key(|(_, v)| v.len())
        .unwrap();
    assert!(
        best.1.len() >= 3,
        "a tile's bytes changed at least twice while g ran: {progress:?}"
    );
    assert!(
        best.1.windows(2).all(|w| w[0].0 < w[1].0),
        "{}'s bytes only grew: {:?}",
        best.0,
        best.1
    );
    // Time left came from that progress (not only from the PCs done).
    let left: Vec<String> =
        serde_json::from_value(b.script("return window.__left;", json!([]))).unwrap();
    assert!(
        left.iter().any(|l| l.contains("from the PCs' progress")),
        "time left from the PCs' progress: {left:?}"
    );
    assert_eq!(
        b.script("return window.__loadedOnce === true;", json!([])),
        true,
        "the tiles changed without a reload"
    );
    // The screenshot once no tile shows g running any more (each tile is sent a second apart).
    wait_until("every tile past g", Duration::from_secs(120), || {
        b.script(
            "return [...document.querySelectorAll('.tile')].every(t =>
                 t.querySelector('.step').textContent !== 'g:deploy'
                 || t.querySelector('.state').textContent !== 'running');",
            json!([]),
        ) == json!(true)
    });
    std::fs::write(artefacts().join("room.png"), b.screenshot()).unwrap();
    // The chart: the stream's rate and its loss over time, sampled by the sender at g; the lossy
    // PC's loss is not a flat line.
    b.go(&format!("{}/campaigns/{id}/chart.svg", console.url));
    let svg = b.source();
    let series = |class: &str| -> Vec<f64> {
        let Some(at) = svg.find(&format!("class=\"{class}\"")) else {
            return Vec::new();
        };
        let points = &svg[at..];
        let points = &points[points.find("points=\"").map_or(0, |p| p + 8)..];
        points[..points.find('"').unwrap_or(0)]
            .split_whitespace()
            .filter_map(|p| p.split_once(',')?.1.parse().ok())
            .collect()
    };
    let (rate, loss) = (series("rate"), series("loss"));
    assert!(rate.len() >= 2, "a rate series: {svg}");
    // One sample a second while the stream flows (the sender samples inside its send loop).
    let span: usize = svg
        .split("Mbit/s over ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the chart's span: {svg}"));
    assert!(
        rate.len() + 1 >= span,
        "{} samples over {span} s: {svg}",
        rate.len()
    );
    assert_eq!(loss.len(), rate.len(), "a loss point per sample: {svg}");
    // The lossy PC's loss shows: not a line along the zero of the chart (y = 115 in its 120 px;
    // a steady 5 % may well be flat, at the top of its own scale).
    assert!(
        loss.iter().any(|y| *y < 114.0),
        "the loss series shows the lossy PC's loss: {svg}"
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

/// `30.0 MiB` → bytes.
fn parse_bytes(words: &str) -> Option<f64> {
    let (n, unit) = words.trim().split_once(' ')?;
    let k = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n.parse::<f64>().ok()? * k)
}
