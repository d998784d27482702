//! `roomcast campaign signoff/status/abort` through the real binary on a real journal file.

use roomcast::campaign::journal::Journal;
use roomcast_proto::procedure::{DeployMode, Event, Plan, Step, Timestamp};
use std::process::Command;

fn roomcast(db: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .arg("campaign")
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn signoff_by_someone_not_allowed_is_refused_and_an_allowed_one_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roomcast.db");
    {
        let mut j = Journal::open(&db).unwrap();
        let plan = Plan {
            room: "B204".into(),
            machines: vec!["PC01".into()],
            master: "PC01".into(),
            mode: DeployMode::Image,
            retries: 0,
            signoff_required: true,
            signoff_allowed: vec!["M. Dupont".into(), "Mme Leroy".into()],
        };
        let (id, _) = j.start(&plan, Timestamp(1)).unwrap();
        let mut state = j.state(id).unwrap();
        for (i, step) in [Step::Collect, Step::Master, Step::Install, Step::Tests]
            .into_iter()
            .enumerate()
        {
            state = j
                .record_on(
                    id,
                    1,
                    state,
                    &Event::StepSucceeded { step },
                    Timestamp(2 + i as i64),
                )
                .unwrap()
                .0;
        }
    }
    let (code, out, _) = roomcast(&db, &["status", "--room", "B204"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Outcome: **in progress, at e:signoff**"),
        "{out}"
    );

    let (code, _, err) = roomcast(
        &db,
        &[
            "signoff",
            "--room",
            "B204",
            "--by",
            "Le Proviseur",
            "--verdict",
            "ok",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "refused: Le Proviseur may not sign off room B204 (allowed: M. Dupont, Mme Leroy)"
        ),
        "{err}"
    );

    let (code, out, _) = roomcast(
        &db,
        &[
            "signoff",
            "--room",
            "B204",
            "--by",
            "Mme Leroy",
            "--verdict",
            "ok",
            "--comment",
            "RAS",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = roomcast(&db, &["report", "--room", "B204"]);
    assert!(out.contains("at f:capture"), "{out}");
    assert!(out.contains("- Mme Leroy — ok: RAS"), "{out}");

    let (code, _, _) = roomcast(&db, &["abort", "--room", "B204", "--by", "technicien"]);
    assert_eq!(code, 0);
    let (code, out, _) = roomcast(&db, &["status", "--room", "B204"]);
    assert_eq!(code, 1, "an aborted campaign reports failure");
    assert!(out.contains("aborted by technicien"), "{out}");
    let (code, _, err) = roomcast(&dir.path().join("none.db"), &["status", "--room", "B204"]);
    assert_eq!(code, 2);
    assert!(err.contains("none.db: no such journal"), "{err}");
}
