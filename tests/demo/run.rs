//! The real `roomcast demo` binary, end to end: a virtual room (namespaces, OpenSSH PCs, a Samba AD
//! DC), a whole campaign a–h, then the checks a technician would make in the morning, and the check
//! that the room left nothing behind.

use roomcast::campaign::journal::Journal;
use roomcast_proto::procedure::{Event, Phase};
use std::path::Path;
use std::process::Command;

const HOSTS: [&str; 3] = ["DEMO-PC01", "DEMO-PC02", "DEMO-PC03"];
const OU: &str = "OU=DEMO,OU=Salles,DC=demo,DC=roomcast,DC=test";

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{:?}: {cmd}", e.file_name()));
            }
        }
    }
    found
}

#[test]
fn roomcast_demo_runs_a_whole_campaign_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["demo", "--dir"])
        .arg(&ws)
        .env_remove("ROOMCAST_STORE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The visible note: the demo signed e itself, a real campaign waits for a person.
    assert!(
        stderr.contains("DEMO: step e signed off automatically")
            && stderr.contains("roomcast campaign signoff"),
        "{stderr}"
    );

    // The journal: one campaign, finished, signed off by the profile's person with the demo's note,
    // and an image captured at f.
    let journal = Journal::open(&ws.join("roomcast.db")).unwrap();
    let id = journal.latest().unwrap().expect("a campaign");
    let state = journal.state(id).unwrap();
    assert_eq!(state.phase, Phase::Finished, "{state:#?}");
    let signoffs: Vec<_> = journal
        .events(id)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Signoff { by, comment, .. } => Some((by, comment.unwrap_or_default())),
            _ => None,
        })
        .collect();
    assert_eq!(signoffs.len(), 1, "{signoffs:?}");
    assert_eq!(signoffs[0].0, "Mme Martin (professeure)");
    assert!(signoffs[0].1.starts_with("DEMO:"), "{signoffs:?}");
    let image = state.image.clone().expect("step f journaled an image");

    // Every PC's disk equals the captured image, restored here independently from the store.
    let reference = dir.path().join("reference.img");
    let restored = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["image", "restore", "--store"])
        .arg(ws.join("store"))
        .arg("--to")
        .arg(&reference)
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    // The image is file-system-aware (issue 14): a restore writes only the bytes its file systems
    // use, so a PC's disk is compared on those bytes (free bytes read as zero), and its free space,
    // never written, may hold anything.
    let store = roomcast_store::Store::open(&ws.join("store")).unwrap();
    let manifest = store
        .open_verified(&store.resolve(&image).unwrap())
        .unwrap();
    let used = |p: &Path| {
        roomcast_store::masked::used_digest(
            &roomcast_store::disk::Disk::open_read(p).unwrap(),
            &manifest,
        )
        .unwrap()
    };
    let want = used(&reference);
    for (i, host) in HOSTS.iter().enumerate() {
        let disk = ws.join("room").join(format!("pc{i}")).join("disk.img");
        assert_eq!(
            used(&disk),
            want,
            "{host}: disk's used bytes differ from image {image}"
        );
        // The demo's own summary shows the same digest.
        assert!(
            stdout.contains(&format!("disk {}", &want[..16])),
            "{host}: the demo's summary shows another disk digest:\n{stdout}"
        );
        // The hostname the PC reported after step h.
        assert!(
            stdout.contains(&format!("hostname {host}")),
            "{host} not renamed:\n{stdout}"
        );
    }
    // Step g reached every PC through one multicast stream (the agents' own reports).
    for i in 1..=HOSTS.len() {
        let path = ws.join(format!("imaging/reports/g/52-54-00-de-00-{i:02x}.json"));
        let report =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            report.contains(r#""result":"ok""#) && report.contains(r#""transport":"multicast""#),
            "{report}"
        );
    }
    // The image holds what step c installed on the master: the installers' files on its ext4.
    let listing = Command::new("debugfs")
        .args(["-R", "ls -p /opt"])
        .arg(&reference)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for tool in ["demo-notes", "demo-atlas"] {
        assert!(
            listing.contains(tool),
            "{tool} not in the image:\n{listing}"
        );
    }

    // The DC's directory (read from its database after the demo stopped it): every hostname of the
    // room in the profile's OU.
    let dc = ws.join("room/dc/dc");
    let listed = Command::new("samba-tool")
        .args(["computer", "list", "--full-dn", "-H"])
        .arg(dc.join("private/sam.ldb"))
        .arg("-s")
        .arg(dc.join("etc/smb.conf"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    for host in HOSTS {
        assert!(
            listed.contains(&format!("CN={host},{OU}")),
            "{host} not in {OU}:\n{listed}"
        );
    }

    // The morning report lists every machine as done at g and h.
    let report = std::fs::read_to_string(ws.join(format!("campaigns/{id}/report.md"))).unwrap();
    assert!(report.contains("Outcome: **finished**"), "{report}");
    let mut wrote = 0;
    for host in HOSTS {
        let row = report
            .lines()
            .find(|l| l.starts_with(&format!("| {host} |")))
            .unwrap_or_else(|| panic!("{host} not in the report:\n{report}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | machine | g | duration | bytes | rate | h | duration |
        assert_eq!((cells[2], cells[6]), ("ok", "ok"), "{row}");
        // Bytes and rate per PC at g come from the agents' reports; the master's disk already
        // held the image: it may write nothing, which the report says in words, with no rate.
        let written = cells[4].ends_with(" B") || cells[4].ends_with("iB");
        assert!(
            (written && cells[5].ends_with("B/s"))
                || (cells[4] == "nothing to write: the disk held the image" && cells[5].is_empty()),
            "{row}"
        );
        wrote += usize::from(written);
    }
    assert!(
        wrote >= HOSTS.len() - 1,
        "the PCs other than the master wrote the image:
{report}"
    );
    assert!(ws.join(format!("campaigns/{id}/report.html")).exists());

    // Nothing left behind: no namespace or state file of the demo's lab, no process of its room.
    let prefix = stderr
        .split("virtual room ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("the demo names its room")
        .to_string();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    assert!(!netns.contains(&prefix), "namespaces left:\n{netns}");
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&prefix));
    assert!(!Path::new("/run/roomcast-lab").join(&prefix).exists());
    assert_eq!(
        processes_mentioning(&ws.to_string_lossy()),
        Vec::<String>::new()
    );
}
