//! The outbox: a campaign records while GLPI is unreachable; later `sync` delivers everything
//! exactly once, also across a crash between sending and marking, and a lost answer.

use super::contract::{APP, USER, config};
use super::native_doc::{facts, software};
use super::standin::{StandIn, State, assert_valid_inventory};
use roomcast::inventory::db::InventoryDb;
use roomcast::inventory::glpi::{GlpiConfig, InventoryEncoding};
use roomcast::inventory::native::document;
use roomcast::inventory::sync::{SyncError, backoff_secs, lock_path, sync, ticket_marker};
use roomcast::inventory::{
    CampaignTicket, ImageDeployed, Intervention, MachineRecord, Outcome, Step, Timestamp,
};
use roomcast::secrets::Secret;
use std::net::TcpListener;
use std::time::Duration;

pub const CAMPAIGN: &str = "0350001A-B204-2026-11-28";
pub const PCS: u32 = 3;

pub fn machine(n: u32) -> MachineRecord {
    MachineRecord {
        school_uai: "0350001A".into(),
        room: "B204".into(),
        hostname: format!("B204-PC{n:02}"),
        mac: format!("b0:5d:95:11:32:{n:02x}"),
        serial: format!("SN{n:04}"),
        model: "OptiPlex 7090".into(),
        glpi_id: None,
    }
}

pub fn ticket() -> CampaignTicket {
    CampaignTicket {
        campaign: CAMPAIGN.into(),
        title: "Mise à niveau salle B204".into(),
        content: "Réinstallation de la salle B204 (profil collège 2026.11).".into(),
    }
}

/// GLPI computers for the room, plus decoys whose serials contain the room's serials.
pub fn glpi_computers() -> Vec<(u64, String, String)> {
    let mut v: Vec<(u64, String, String)> = (1..=PCS)
        .map(|n| {
            (
                100 + u64::from(n),
                format!("B204-PC{n:02}"),
                format!("SN{n:04}"),
            )
        })
        .collect();
    v.push((900, "OLD".into(), "SN00019".into()));
    v
}

pub fn start_glpi(listener: TcpListener) -> StandIn {
    let c = glpi_computers();
    let refs: Vec<(u64, &str, &str)> = c
        .iter()
        .map(|(i, n, s)| (*i, n.as_str(), s.as_str()))
        .collect();
    StandIn::start_on(listener, State::new(Some(APP), USER, &refs))
}

/// What a campaign records for a room: machines, steps g and h on each, the image, the inventory.
/// Returns the number of outbox records it queues.
pub fn run_campaign(db: &mut InventoryDb, t0: i64) -> usize {
    for n in 1..=PCS {
        db.upsert_machine(&machine(n), Timestamp(t0)).unwrap();
        let m = machine(n);
        for (i, step) in [Step::Deploy, Step::Join].into_iter().enumerate() {
            let start = t0 + 600 * i as i64 + i64::from(n);
            db.record_intervention(
                &Intervention {
                    campaign: CAMPAIGN.into(),
                    step,
                    machine: m.mac.clone(),
                    result: Outcome::Ok,
                    started_at: Timestamp(start),
                    ended_at: Timestamp(start + 300),
                    detail: "image college-2026.11".into(),
                },
                &ticket(),
                Timestamp(start + 300),
            )
            .unwrap();
        }
        db.record_image_deployed(
            &ImageDeployed {
                campaign: CAMPAIGN.into(),
                machine: m.mac.clone(),
                image_id: "9f2c0e".into(),
                image_version: "college-2026.11".into(),
                at: Timestamp(t0 + 400),
                result: Outcome::Ok,
            },
            Timestamp(t0 + 400),
        )
        .unwrap();
        let doc = document(&facts(n), &software(), Timestamp(t0 + 500));
        assert_valid_inventory(&doc);
        db.enqueue_native_inventory(&format!("agent-{n}"), &doc, Timestamp(t0 + 500))
            .unwrap();
    }
    // Per PC: 1 link + 2 followups + 1 computer update + 1 inventory.
    (PCS * 5) as usize
}

fn assert_delivered_once(s: &StandIn) {
    s.with(|st| {
        assert_eq!(st.tickets.len(), 1, "one ticket per campaign");
        assert_eq!(st.tickets[0].1, "Mise à niveau salle B204");
        assert!(st.tickets[0].2.contains(&ticket_marker(CAMPAIGN)));
        let mut links: Vec<u64> = st.item_tickets.iter().map(|l| l.2).collect();
        links.sort();
        assert_eq!(links, [101, 102, 103]);
        assert_eq!(st.followups.len(), (PCS * 2) as usize);
        assert_eq!(st.inventories.len(), PCS as usize);
        for (_, doc, _) in &st.inventories {
            assert_valid_inventory(doc);
        }
        for c in &st.computers {
            if c.id == 900 {
                assert_eq!(c.comment, "", "the decoy SN00019 is untouched");
            } else {
                assert!(c.comment.contains("college-2026.11"), "{c:?}");
                assert_eq!(c.comment.matches("[roomcast]").count(), 1, "{c:?}");
            }
        }
    });
}

#[test]
fn campaign_while_glpi_is_down_then_sync_delivers_everything_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = InventoryDb::open(&dir.path().join("roomcast.db")).unwrap();
    // Reserve a port, and keep it closed during the campaign: GLPI is down.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let down = GlpiConfig {
        url: url.clone(),
        app_token: Some(Secret::new(APP)),
        user_token: Secret::new(USER),
        timeout: Duration::from_secs(2),
    };
    drop(listener);
    let t0 = 1_795_800_000;
    let queued = run_campaign(&mut db, t0);
    assert_eq!(db.outbox_stats().unwrap().pending, queued as u64);

    // A sync during the night: GLPI unreachable. One record fails, the rest wait; nothing is lost.
    let now = Timestamp(t0 + 1000);
    let r = sync(&db, &down, InventoryEncoding::Zlib, now).unwrap();
    assert_eq!(
        (r.sent, r.failed.len(), r.deferred),
        (0, 1, queued - 1),
        "{r:?}"
    );
    assert!(
        r.stopped.as_deref().unwrap().contains("unreachable"),
        "{r:?}"
    );
    let stats = db.outbox_stats().unwrap();
    assert_eq!((stats.retrying, stats.pending), (1, queued as u64 - 1));
    // The failed record waits for its backoff; the others are due at once.
    assert_eq!(db.outbox_due(now).unwrap().len(), queued - 1);
    assert_eq!(
        db.outbox_due(Timestamp(now.0 + backoff_secs(1)))
            .unwrap()
            .len(),
        queued
    );

    // Morning: GLPI is back on the same address.
    let listener = TcpListener::bind(url.trim_start_matches("http://")).unwrap();
    let s = start_glpi(listener);
    let later = Timestamp(now.0 + 3600);
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Zlib,
        later,
    )
    .unwrap();
    assert_eq!(
        (r.sent, r.failed.len(), r.deferred),
        (queued, 0, 0),
        "{r:?}"
    );
    assert_delivered_once(&s);
    assert_eq!(db.outbox_stats().unwrap().sent, queued as u64);
    assert_eq!(
        db.machine(&machine(2).mac)
            .unwrap()
            .unwrap()
            .machine
            .glpi_id,
        Some(102)
    );
    s.with(|st| assert!(st.sessions.is_empty(), "session killed"));

    // Nothing left: a second sync sends nothing.
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Zlib,
        later,
    )
    .unwrap();
    assert_eq!(r.sent, 0);

    // Crash between sending and marking, for every record: GLPI has it all, the database says
    // nothing was sent. Re-delivery finds each record in GLPI and creates nothing.
    assert_eq!(db.reset_delivery().unwrap(), queued);
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Zlib,
        later,
    )
    .unwrap();
    assert_eq!(r.sent, queued, "{r:?}");
    // Links, followups and computer updates are recognised; inventories are idempotent re-posts.
    assert_eq!(r.found_already_sent, queued - PCS as usize, "{r:?}");
    s.with(|st| {
        assert_eq!(st.count("POST Ticket"), 1);
        assert_eq!(st.count("POST Item_Ticket"), PCS as usize);
        assert_eq!(st.count("POST ITILFollowup"), (PCS * 2) as usize);
        assert_eq!(st.count("PUT Computer"), PCS as usize);
        // GLPI matches a re-posted inventory to the same asset (serial, uuid, MAC): no duplicate.
        assert_eq!(st.inventories.len(), 2 * PCS as usize);
        st.inventories.truncate(PCS as usize);
    });
    assert_delivered_once(&s);
}

#[test]
fn a_ticket_created_before_a_crash_is_found_by_its_marker_not_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = InventoryDb::open(&dir.path().join("roomcast.db")).unwrap();
    run_campaign(&mut db, 1_795_800_000);
    let s = start_glpi(TcpListener::bind("127.0.0.1:0").unwrap());
    // GLPI already holds the ticket (created, then the process died before storing its id).
    s.with(|st| {
        st.tickets.push((
            555,
            "Mise à niveau salle B204".into(),
            format!("...\n\n{}", ticket_marker(CAMPAIGN)),
        ))
    });
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Json,
        Timestamp(1_795_900_000),
    )
    .unwrap();
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(db.ticket_id(CAMPAIGN).unwrap(), Some(555));
    s.with(|st| {
        assert_eq!(st.count("POST Ticket"), 0);
        assert!(st.followups.iter().all(|f| f.1 == 555));
    });
}

#[test]
fn a_followup_whose_answer_was_lost_to_a_timeout_is_not_posted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = InventoryDb::open(&dir.path().join("roomcast.db")).unwrap();
    let queued = run_campaign(&mut db, 1_795_800_000);
    let s = start_glpi(TcpListener::bind("127.0.0.1:0").unwrap());
    // GLPI creates the first followup, then answers too late for the client.
    s.with(|st| st.slow_after = Some(("POST ITILFollowup".into(), Duration::from_secs(2))));
    let cfg = config(&s, Duration::from_millis(500));
    let t = 1_795_900_000;
    let r = sync(&db, &cfg, InventoryEncoding::Json, Timestamp(t)).unwrap();
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(r.failed[0].1.contains("did not answer"), "{r:?}");
    s.with(|st| assert_eq!(st.followups.len(), 1, "GLPI did create it"));
    // After the backoff, the record is retried: it finds its marker and posts nothing.
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Json,
        Timestamp(t + 3600),
    )
    .unwrap();
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(db.outbox_stats().unwrap().sent, queued as u64);
    assert_delivered_once(&s);
    s.with(|st| assert_eq!(st.count("POST ITILFollowup"), (PCS * 2) as usize));
}

#[test]
fn a_500_stops_the_pass_and_the_record_is_retried_after_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = InventoryDb::open(&dir.path().join("roomcast.db")).unwrap();
    let queued = run_campaign(&mut db, 1_795_800_000);
    let s = start_glpi(TcpListener::bind("127.0.0.1:0").unwrap());
    s.with(|st| st.fail_500 = 1);
    let t = 1_795_900_000;
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Zlib,
        Timestamp(t),
    )
    .unwrap();
    assert_eq!((r.sent, r.failed.len()), (0, 1), "{r:?}");
    assert!(r.failed[0].1.contains("500"), "{r:?}");
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Zlib,
        Timestamp(t + backoff_secs(1)),
    )
    .unwrap();
    assert_eq!(r.sent, queued, "{r:?}");
    assert_delivered_once(&s);
}

#[test]
fn a_second_sync_while_one_runs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = InventoryDb::open(&dir.path().join("roomcast.db")).unwrap();
    run_campaign(&mut db, 1_795_800_000);
    let s = start_glpi(TcpListener::bind("127.0.0.1:0").unwrap());
    let held = std::fs::File::create(lock_path(&db)).unwrap();
    held.lock().unwrap();
    let e = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Json,
        Timestamp(1_795_900_000),
    )
    .unwrap_err();
    assert!(matches!(e, SyncError::Busy { .. }), "{e:?}");
    assert!(e.to_string().contains("roomcast.db.sync-lock"), "{e}");
    s.with(|st| assert_eq!(st.count("initSession"), 0));
    held.unlock().unwrap();
    let r = sync(
        &db,
        &config(&s, Duration::from_secs(5)),
        InventoryEncoding::Json,
        Timestamp(1_795_900_000),
    )
    .unwrap();
    assert!(r.failed.is_empty() && r.sent > 0, "{r:?}");
}
