//! Contract tests: the REST adapter against the GLPI stand-in (which enforces headers, sessions,
//! status codes, error bodies, substring search, pagination).

use super::standin::{StandIn, State};
use roomcast::inventory::glpi::{GlpiClient, GlpiConfig, GlpiError};
use roomcast::secrets::Secret;
use std::io::{Read, Write};
use std::time::Duration;

pub const APP: &str = "app-tok-1";
pub const USER: &str = "user-tok-1";

pub fn config(s: &StandIn, timeout: Duration) -> GlpiConfig {
    GlpiConfig {
        url: s.url(),
        app_token: Some(Secret::new(APP)),
        user_token: Secret::new(USER),
        timeout,
    }
}

fn client(s: &StandIn) -> GlpiClient {
    GlpiClient::new(config(s, Duration::from_secs(5)))
}

fn standin(computers: &[(u64, &str, &str)]) -> StandIn {
    StandIn::start(State::new(Some(APP), USER, computers))
}

#[test]
fn happy_path_session_search_update_ticket_link_followup_kill() {
    let s = standin(&[(7, "B204-PC01", "640HP72"), (8, "B204-PC02", "640HP73")]);
    let mut c = client(&s);
    c.init_session().unwrap();
    let id = c.find_computer_by_serial("640HP72", "B204-PC01").unwrap();
    assert_eq!(id, 7);
    assert_eq!(c.computer_comment(7).unwrap(), "");
    c.update_computer(7, serde_json::json!({"comment": "image v1"}))
        .unwrap();
    let t = c
        .create_ticket("Mise à niveau salle B204", "campagne c1")
        .unwrap();
    c.link_computer(t, 7).unwrap();
    let f = c.add_followup(t, "Étape g réussie").unwrap();
    assert!(f > 0);
    assert_eq!(c.ticket_computers(t).unwrap(), [7]);
    assert_eq!(c.ticket_followups(t).unwrap(), ["Étape g réussie"]);
    c.kill_session().unwrap();
    s.with(|st| {
        assert_eq!(st.computers[0].comment, "image v1");
        assert_eq!(st.tickets.len(), 1);
        assert_eq!(st.tickets[0].1, "Mise à niveau salle B204");
        assert_eq!(st.item_tickets.len(), 1);
        assert_eq!(st.count("initSession"), 1);
        assert_eq!(st.count("killSession"), 1);
        assert!(st.sessions.is_empty(), "session closed");
    });
}

#[test]
fn expired_session_mid_run_is_reopened_once_and_the_call_retried() {
    let s = standin(&[(7, "B204-PC01", "SN7")]);
    // The 2nd authenticated call finds every session gone (GLPI's session lifetime ran out).
    s.with(|st| st.expire_sessions_at_call = Some(2));
    let mut c = client(&s);
    assert_eq!(c.find_computer_by_serial("SN7", "B204-PC01").unwrap(), 7);
    let t = c.create_ticket("Mise à niveau salle B204", "x").unwrap();
    assert!(c.add_followup(t, "ok").is_ok());
    s.with(|st| {
        assert_eq!(st.count("initSession"), 2);
        assert_eq!(
            st.count("POST Ticket"),
            2,
            "one refused (expired), one retried"
        );
        assert_eq!(st.tickets.len(), 1, "the retried call created one ticket");
    });
}

#[test]
fn a_session_refused_again_after_reopening_is_a_clear_error() {
    let s = standin(&[(7, "B204-PC01", "SN7")]);
    s.with(|st| st.expire_always = true);
    let mut c = client(&s);
    let e = c.find_computer_by_serial("SN7", "B204-PC01").unwrap_err();
    assert!(matches!(e, GlpiError::SessionRejected { .. }), "{e:?}");
    assert!(e.is_fatal());
    s.with(|st| assert_eq!(st.count("initSession"), 2, "re-init once, not forever"));
}

#[test]
fn server_errors_are_transient_and_name_the_operation() {
    let s = standin(&[(7, "B204-PC01", "SN7")]);
    let mut c = client(&s);
    c.init_session().unwrap();
    s.with(|st| st.fail_500 = 1);
    let e = c.find_computer_by_serial("SN7", "B204-PC01").unwrap_err();
    match &e {
        GlpiError::Server { status, op, .. } => {
            assert_eq!(*status, 500);
            assert!(op.contains("B204-PC01") && op.contains("SN7"), "{op}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.is_transient());
    assert_eq!(c.find_computer_by_serial("SN7", "B204-PC01").unwrap(), 7);
}

#[test]
fn a_server_slower_than_the_timeout_gives_a_timeout_error() {
    let s = standin(&[(7, "B204-PC01", "SN7")]);
    s.with(|st| st.delay = Some(Duration::from_secs(3)));
    let mut c = GlpiClient::new(config(&s, Duration::from_millis(300)));
    let e = c.init_session().unwrap_err();
    assert!(matches!(e, GlpiError::Timeout { .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("did not answer within 300ms"), "{e}");
}

#[test]
fn unreachable_glpi_is_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut c = GlpiClient::new(GlpiConfig {
        url: format!("http://127.0.0.1:{port}"),
        app_token: None,
        user_token: Secret::new(USER),
        timeout: Duration::from_secs(2),
    });
    let e = c.init_session().unwrap_err();
    assert!(matches!(e, GlpiError::Unreachable { .. }), "{e:?}");
    assert!(e.is_transient());
}

#[test]
fn serial_search_is_substring_so_the_exact_match_is_picked() {
    // `SN1` is contained in all three serials.
    let s = standin(&[(1, "PC-A", "XSN1"), (2, "PC-B", "SN10"), (3, "PC-C", "SN1")]);
    let mut c = client(&s);
    assert_eq!(c.find_computer_by_serial("SN1", "PC-C").unwrap(), 3);
    let e = c.find_computer_by_serial("SN", "PC-?").unwrap_err();
    assert!(matches!(e, GlpiError::SerialNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("PC-?"), "{e}");
}

#[test]
fn two_exact_matches_are_reported_as_ambiguous() {
    let s = standin(&[
        (4, "PC-A", "DUP1"),
        (5, "PC-B", "DUP1"),
        (6, "PC-C", "DUP12"),
    ]);
    let mut c = client(&s);
    let e = c.find_computer_by_serial("DUP1", "B204-PC03").unwrap_err();
    assert_eq!(
        e,
        GlpiError::AmbiguousSerial {
            serial: "DUP1".into(),
            hostname: "B204-PC03".into(),
            ids: vec![4, 5]
        }
    );
    assert!(e.to_string().contains("[4, 5]"), "{e}");
}

#[test]
fn paginated_search_and_sub_items_are_followed_through_206() {
    // `SN5` is contained in all seven serials; the exact one comes last, on the 4th page of 2.
    let serials: Vec<String> = (0..6)
        .map(|i| format!("SN5-{i}"))
        .chain(["SN5".into()])
        .collect();
    let refs: Vec<(u64, &str, &str)> = serials
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64 + 1, "PC", s.as_str()))
        .collect();
    let s = standin(&refs);
    s.with(|st| st.page_size = 2);
    let mut c = client(&s);
    c.page_size = 2;
    assert_eq!(c.find_computer_by_serial("SN5", "PC7").unwrap(), 7);
    assert_eq!(c.find_computer_by_serial("SN5-0", "PC1").unwrap(), 1);
    let t = c.create_ticket("Mise à niveau salle B204", "x").unwrap();
    for i in 0..5 {
        c.add_followup(t, &format!("f{i}")).unwrap();
    }
    assert_eq!(
        c.ticket_followups(t).unwrap(),
        ["f0", "f1", "f2", "f3", "f4"]
    );
    s.with(|st| {
        assert_eq!(st.count("GET search/Computer"), 4 + 1, "4 pages, then 1");
        assert_eq!(st.count("GET Ticket/ITILFollowup"), 3);
    });
}

#[test]
fn bad_tokens_give_clear_errors() {
    let s = standin(&[]);
    let mut c = GlpiClient::new(GlpiConfig {
        user_token: Secret::new("wrong"),
        ..config(&s, Duration::from_secs(5))
    });
    let e = c.init_session().unwrap_err();
    assert!(
        matches!(
            e,
            GlpiError::BadToken {
                token: "user_token",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_fatal());
    let msg = e.to_string();
    assert!(
        msg.contains("user_token") && msg.contains("ERROR_GLPI_LOGIN_USER_TOKEN"),
        "{msg}"
    );
    assert!(!msg.contains("wrong"), "the token never appears: {msg}");

    let mut c = GlpiClient::new(GlpiConfig {
        app_token: Some(Secret::new("nope")),
        ..config(&s, Duration::from_secs(5))
    });
    let e = c.init_session().unwrap_err();
    assert!(
        matches!(
            e,
            GlpiError::BadToken {
                token: "App-Token",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn missing_right_names_the_operation() {
    let s = standin(&[(7, "B204-PC01", "SN7")]);
    s.with(|st| {
        st.denied.insert("Ticket".into());
    });
    let mut c = client(&s);
    let e = c
        .create_ticket("Mise à niveau salle B204", "x")
        .unwrap_err();
    assert!(matches!(e, GlpiError::MissingRight { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("create ticket") && msg.contains("ERROR_RIGHT_MISSING"),
        "{msg}"
    );
    assert!(!e.is_transient() && !e.is_fatal());
}

#[test]
fn not_found_computer_is_reported() {
    let s = standin(&[(7, "B204-PC01", "SN7")]);
    let mut c = client(&s);
    let e = c.computer_comment(99).unwrap_err();
    assert!(matches!(e, GlpiError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("computer 99"), "{e}");
}

/// One raw HTTP exchange, to check the stand-in itself enforces what the client must respect.
fn raw(s: &StandIn, request: &str) -> String {
    let addr = s.url().trim_start_matches("http://").to_string();
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    t.write_all(request.as_bytes()).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Read until the head and the whole body (Content-Length) have arrived.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = t.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len || n == 0 {
                return text;
            }
        }
        assert!(n > 0, "connection closed early: {text}");
    }
}

#[test]
fn standin_refuses_get_with_body_missing_session_and_read_only_writes() {
    let s = standin(&[(7, "B204-PC01", "SN7")]);
    let r = raw(
        &s,
        &format!(
            "GET /apirest.php/initSession HTTP/1.1\r\nHost: x\r\nApp-Token: {APP}\r\nAuthorization: user_token {USER}\r\nContent-Length: 2\r\n\r\n{{}}"
        ),
    );
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("ERROR_JSON_PAYLOAD_FORBIDDEN"),
        "{r}"
    );
    let r = raw(
        &s,
        &format!("GET /apirest.php/Computer/7 HTTP/1.1\r\nHost: x\r\nApp-Token: {APP}\r\n\r\n"),
    );
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("ERROR_SESSION_TOKEN_MISSING"),
        "{r}"
    );
    // A session opened without session_write=true cannot create.
    let r = raw(
        &s,
        &format!(
            "GET /apirest.php/initSession HTTP/1.1\r\nHost: x\r\nApp-Token: {APP}\r\nAuthorization: user_token {USER}\r\n\r\n"
        ),
    );
    let body = &r[r.find("\r\n\r\n").unwrap() + 4..];
    let token = serde_json::from_str::<serde_json::Value>(body).unwrap()["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    let payload = r#"{"input":{"name":"n","content":"c","type":2}}"#;
    let r = raw(
        &s,
        &format!(
            "POST /apirest.php/Ticket HTTP/1.1\r\nHost: x\r\nApp-Token: {APP}\r\nSession-Token: {token}\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        ),
    );
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("ERROR_SESSION_READ_ONLY"),
        "{r}"
    );
    s.with(|st| assert!(st.tickets.is_empty()));
}
