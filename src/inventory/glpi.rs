//! GLPI adapters: the legacy REST API (`/apirest.php`, GLPI 9.5–11) and the native inventory endpoint
//! (`/front/inventory.php`). Blocking HTTP (ureq) with a timeout on every call: these run from
//! `roomcast inventory sync`, never from inside a campaign.
//!
//! Contract followed (see `shared/glpi/README.md` and `docs/INVENTORY.md`):
//! - `initSession` with `Authorization: user_token …`, `App-Token`, and `session_write=true` (a read-only
//!   session cannot create tickets); every later call sends `Session-Token`.
//! - A call answered 401 `ERROR_SESSION_TOKEN_INVALID` (session expired mid-run) re-opens the session
//!   once and is retried once.
//! - Search is substring (`contains`): results are filtered for an exact serial here; 206 answers are
//!   paged through with `range`.
//! - Error bodies `["ERROR_…", "message"]` become [`GlpiError`] variants with the operation named.

use super::native::personal_data_keys;
use crate::secrets::Secret;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::Duration;

/// Default time budget for one GLPI call (connect, send, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Rows asked per search or sub-item page (GLPI's default page is 50 rows).
pub const PAGE_SIZE: usize = 50;

/// A GLPI failure, naming the operation (which machine, which ticket).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlpiError {
    /// GLPI refused a token at session start.
    #[error(
        "GLPI refused the {token} ({code}: {detail}); check the token in the secrets file or environment"
    )]
    BadToken {
        /// Which token: `App-Token` or `user_token`.
        token: &'static str,
        /// GLPI's error code.
        code: String,
        /// GLPI's message.
        detail: String,
    },
    /// The session was refused again right after being re-opened.
    #[error("{op}: GLPI rejected the session token even after a new session ({detail})")]
    SessionRejected {
        /// The operation.
        op: String,
        /// GLPI's message.
        detail: String,
    },
    /// The GLPI user (profile) lacks the right for this operation.
    #[error(
        "{op}: the GLPI account lacks the right ({code}: {detail}); give its profile the right in GLPI"
    )]
    MissingRight {
        /// The operation.
        op: String,
        /// GLPI's error code.
        code: String,
        /// GLPI's message.
        detail: String,
    },
    /// The item asked for does not exist.
    #[error("{op}: not found in GLPI ({detail})")]
    NotFound {
        /// The operation.
        op: String,
        /// GLPI's message.
        detail: String,
    },
    /// No GLPI computer has exactly this serial.
    #[error("no GLPI computer has serial {serial:?} ({hostname}); inventory the PC in GLPI first")]
    SerialNotFound {
        /// The serial searched.
        serial: String,
        /// The machine's hostname.
        hostname: String,
    },
    /// Several GLPI computers have exactly this serial.
    #[error(
        "serial {serial:?} ({hostname}) is shared by GLPI computers {ids:?}; merge or fix them in GLPI"
    )]
    AmbiguousSerial {
        /// The serial searched.
        serial: String,
        /// The machine's hostname.
        hostname: String,
        /// The ids of every exact match.
        ids: Vec<u64>,
    },
    /// GLPI did not answer in time.
    #[error("{op}: GLPI did not answer within {after:?} ({url})")]
    Timeout {
        /// The operation.
        op: String,
        /// The URL called.
        url: String,
        /// The time budget.
        after: Duration,
    },
    /// GLPI could not be reached.
    #[error("{op}: GLPI unreachable at {url}: {detail}")]
    Unreachable {
        /// The operation.
        op: String,
        /// The URL called.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// GLPI failed (5xx).
    #[error("{op}: GLPI server error {status}: {detail}")]
    Server {
        /// The operation.
        op: String,
        /// HTTP status.
        status: u16,
        /// The body, shortened.
        detail: String,
    },
    /// GLPI refused the request (other 4xx).
    #[error("{op}: GLPI refused the request ({status} {code}: {detail})")]
    Rejected {
        /// The operation.
        op: String,
        /// HTTP status.
        status: u16,
        /// GLPI's error code.
        code: String,
        /// GLPI's message.
        detail: String,
    },
    /// GLPI's answer did not have the documented shape.
    #[error("{op}: unexpected answer from GLPI: {detail}")]
    Protocol {
        /// The operation.
        op: String,
        /// What was wrong.
        detail: String,
    },
    /// `/front/inventory.php` refused the document.
    #[error("GLPI refused the inventory of agent {agent_id} (HTTP {status}): {message}")]
    InventoryRejected {
        /// The `GLPI-Agent-ID`.
        agent_id: String,
        /// HTTP status.
        status: u16,
        /// GLPI's message.
        message: String,
    },
    /// A document with personal data was about to be sent: refused (framework 7.4.1.2).
    #[error("inventory of agent {agent_id} carries personal data at {keys:?}: not sent")]
    PersonalData {
        /// The `GLPI-Agent-ID`.
        agent_id: String,
        /// JSON paths of the offending keys.
        keys: Vec<String>,
    },
}

impl GlpiError {
    /// True when GLPI is down, slow or failing as a whole: the rest of a sync pass waits.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GlpiError::Timeout { .. } | GlpiError::Unreachable { .. } | GlpiError::Server { .. }
        )
    }

    /// True when no further call can succeed with this configuration (bad token).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            GlpiError::BadToken { .. } | GlpiError::SessionRejected { .. }
        )
    }
}

/// How to reach GLPI.
#[derive(Debug, Clone)]
pub struct GlpiConfig {
    /// GLPI's root URL (e.g. `https://glpi.example.org`); `/apirest.php` and `/front/inventory.php`
    /// are appended.
    pub url: String,
    /// The API client's App-Token, when GLPI's API client has one.
    pub app_token: Option<Secret>,
    /// The technician account's personal API token.
    pub user_token: Secret,
    /// Time budget of one call.
    pub timeout: Duration,
}

/// Body encoding of a native inventory POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryEncoding {
    /// `application/json`.
    Json,
    /// `application/x-compress-zlib` (glpi-agent's default).
    Zlib,
}

struct Answer {
    status: u16,
    content_range: Option<String>,
    body: Vec<u8>,
}

/// A GLPI REST client holding one session.
pub struct GlpiClient {
    agent: ureq::Agent,
    config: GlpiConfig,
    session: Option<Secret>,
    /// Rows per page for searches and sub-item lists.
    pub page_size: usize,
}

impl std::fmt::Debug for GlpiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlpiClient")
            .field("url", &self.config.url)
            .field("session", &self.session)
            .finish()
    }
}

fn error_body(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(a)) if !a.is_empty() => (
            a[0].as_str().unwrap_or_default().to_string(),
            a.get(1)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
        ),
        _ => (String::new(), shorten(&String::from_utf8_lossy(body))),
    }
}

fn shorten(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn json_id(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// `Content-Range: 0-49/120` -> (49, 120).
fn parse_content_range(h: &str) -> Option<(usize, usize)> {
    let (range, total) = h.trim().rsplit_once('/')?;
    let (_, end) = range.rsplit_once('-')?;
    Some((end.trim().parse().ok()?, total.trim().parse().ok()?))
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::config::Config::builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn transport_error(e: ureq::Error, op: &str, url: &str, timeout: Duration) -> GlpiError {
    match e {
        ureq::Error::Timeout(_) => GlpiError::Timeout {
            op: op.to_string(),
            url: url.to_string(),
            after: timeout,
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => GlpiError::Timeout {
            op: op.to_string(),
            url: url.to_string(),
            after: timeout,
        },
        other => GlpiError::Unreachable {
            op: op.to_string(),
            url: url.to_string(),
            detail: other.to_string(),
        },
    }
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
}

impl GlpiClient {
    /// A client for `config`; no call is made until [`GlpiClient::init_session`].
    pub fn new(config: GlpiConfig) -> GlpiClient {
        GlpiClient {
            agent: agent(config.timeout),
            config,
            session: None,
            page_size: PAGE_SIZE,
        }
    }

    fn api_url(&self, path: &str) -> String {
        format!(
            "{}/apirest.php/{}",
            self.config.url.trim_end_matches('/'),
            path
        )
    }

    /// One HTTP exchange; `session` adds the Session-Token header.
    fn exchange(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        extra: &[(&str, String)],
        op: &str,
    ) -> Result<Answer, GlpiError> {
        let url = self.api_url(path);
        let mut headers: Vec<(&str, String)> = extra.to_vec();
        if let Some(t) = &self.config.app_token {
            headers.push(("App-Token", t.expose().to_string()));
        }
        if let Some(s) = &self.session {
            headers.push(("Session-Token", s.expose().to_string()));
        }
        let result = match method {
            Method::Get => {
                let mut rb = self.agent.get(&url);
                for (k, v) in query {
                    rb = rb.query(k, v);
                }
                for (k, v) in &headers {
                    rb = rb.header(*k, v);
                }
                rb.call()
            }
            Method::Post | Method::Put => {
                let mut rb = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.put(&url),
                };
                for (k, v) in query {
                    rb = rb.query(k, v);
                }
                for (k, v) in &headers {
                    rb = rb.header(*k, v);
                }
                rb.send_json(body.unwrap_or(&Value::Null))
            }
        };
        let timeout = self.config.timeout;
        let mut resp = result.map_err(|e| transport_error(e, op, &url, timeout))?;
        let status = resp.status().as_u16();
        let content_range = resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .body_mut()
            .read_to_vec()
            .map_err(|e| transport_error(e, op, &url, timeout))?;
        Ok(Answer {
            status,
            content_range,
            body,
        })
    }

    fn classify(&self, a: &Answer, op: &str) -> GlpiError {
        let (code, detail) = error_body(&a.body);
        let op = op.to_string();
        match a.status {
            500..=599 => GlpiError::Server {
                op,
                status: a.status,
                detail: if detail.is_empty() { code } else { detail },
            },
            403 => GlpiError::MissingRight { op, code, detail },
            404 => GlpiError::NotFound { op, detail },
            _ if code.contains("APP_TOKEN") => GlpiError::BadToken {
                token: "App-Token",
                code,
                detail,
            },
            _ if code.contains("USER_TOKEN") || code.starts_with("ERROR_GLPI_LOGIN") => {
                GlpiError::BadToken {
                    token: "user_token",
                    code,
                    detail,
                }
            }
            status => GlpiError::Rejected {
                op,
                status,
                code,
                detail,
            },
        }
    }

    /// Opens a write session (`session_write=true`) with the user token.
    pub fn init_session(&mut self) -> Result<(), GlpiError> {
        let op = "open GLPI session";
        self.session = None;
        let auth = format!("user_token {}", self.config.user_token.expose());
        let a = self.exchange(
            Method::Get,
            "initSession",
            &[("session_write".into(), "true".into())],
            None,
            &[("Authorization", auth)],
            op,
        )?;
        if a.status != 200 {
            return Err(self.classify(&a, op));
        }
        let v: Value = serde_json::from_slice(&a.body).map_err(|e| GlpiError::Protocol {
            op: op.into(),
            detail: e.to_string(),
        })?;
        let token = v
            .get("session_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| GlpiError::Protocol {
                op: op.into(),
                detail: "no session_token in the answer".into(),
            })?;
        self.session = Some(Secret::new(token));
        Ok(())
    }

    /// Closes the session (best effort is the caller's choice: errors are returned).
    pub fn kill_session(&mut self) -> Result<(), GlpiError> {
        if self.session.is_none() {
            return Ok(());
        }
        let op = "close GLPI session";
        let a = self.exchange(Method::Get, "killSession", &[], None, &[], op)?;
        self.session = None;
        match a.status {
            200 => Ok(()),
            _ => Err(self.classify(&a, op)),
        }
    }

    /// A session call: opens the session when needed; on an expired session, re-opens it once and
    /// retries. Returns the answer when its status is in `ok`.
    fn call(
        &mut self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
        ok: &[u16],
        op: &str,
    ) -> Result<Answer, GlpiError> {
        if self.session.is_none() {
            self.init_session()?;
        }
        let mut reopened = false;
        loop {
            let a = self.exchange(method, path, query, body, &[], op)?;
            if ok.contains(&a.status) {
                return Ok(a);
            }
            let (code, detail) = error_body(&a.body);
            if a.status == 401 && code == "ERROR_SESSION_TOKEN_INVALID" {
                if reopened {
                    return Err(GlpiError::SessionRejected {
                        op: op.into(),
                        detail,
                    });
                }
                tracing::info!(op, "GLPI session expired; opening a new one");
                reopened = true;
                self.init_session()?;
                continue;
            }
            return Err(self.classify(&a, op));
        }
    }

    fn json(a: &Answer, op: &str) -> Result<Value, GlpiError> {
        serde_json::from_slice(&a.body).map_err(|e| GlpiError::Protocol {
            op: op.into(),
            detail: format!("{e}: {}", shorten(&String::from_utf8_lossy(&a.body))),
        })
    }

    /// Every row of `GET search/<itemtype>` for one `contains` criterion, following 206 pages.
    fn search_contains(
        &mut self,
        itemtype: &str,
        field: u32,
        value: &str,
        display: &[u32],
        op: &str,
    ) -> Result<Vec<serde_json::Map<String, Value>>, GlpiError> {
        let mut rows = Vec::new();
        let mut start = 0usize;
        loop {
            let mut q = vec![
                ("criteria[0][field]".to_string(), field.to_string()),
                (
                    "criteria[0][searchtype]".to_string(),
                    "contains".to_string(),
                ),
                ("criteria[0][value]".to_string(), value.to_string()),
                (
                    "range".to_string(),
                    format!("{}-{}", start, start + self.page_size - 1),
                ),
            ];
            for (i, f) in display.iter().enumerate() {
                q.push((format!("forcedisplay[{i}]"), f.to_string()));
            }
            let a = self.call(
                Method::Get,
                &format!("search/{itemtype}"),
                &q,
                None,
                &[200, 206],
                op,
            )?;
            let v = Self::json(&a, op)?;
            let total = v.get("totalcount").and_then(json_id).unwrap_or(0) as usize;
            let data = match v.get("data") {
                Some(Value::Array(d)) => d.clone(),
                // GLPI omits `data` when nothing matches.
                None | Some(Value::Null) => Vec::new(),
                Some(other) => {
                    return Err(GlpiError::Protocol {
                        op: op.into(),
                        detail: format!("`data` is not a list: {other}"),
                    });
                }
            };
            let got = data.len();
            rows.extend(data.into_iter().filter_map(|r| match r {
                Value::Object(m) => Some(m),
                _ => None,
            }));
            if a.status == 200 || got == 0 {
                return Ok(rows);
            }
            let end = a
                .content_range
                .as_deref()
                .and_then(parse_content_range)
                .map_or(start + got - 1, |(end, _)| end);
            start = end + 1;
            if start >= total {
                return Ok(rows);
            }
        }
    }

    /// The id of the one GLPI computer whose serial is exactly `serial` (GLPI's search matches
    /// substrings: `SN1` also finds `SN10`).
    pub fn find_computer_by_serial(
        &mut self,
        serial: &str,
        hostname: &str,
    ) -> Result<u64, GlpiError> {
        let op = format!("find computer {hostname} by serial {serial:?}");
        let rows = self.search_contains("Computer", 5, serial, &[2, 1, 5], &op)?;
        let mut ids: Vec<u64> = rows
            .iter()
            .filter(|r| {
                r.get("5")
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| s.trim().eq_ignore_ascii_case(serial.trim()))
            })
            .filter_map(|r| r.get("2").and_then(json_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        match ids.as_slice() {
            [id] => Ok(*id),
            [] => Err(GlpiError::SerialNotFound {
                serial: serial.into(),
                hostname: hostname.into(),
            }),
            _ => Err(GlpiError::AmbiguousSerial {
                serial: serial.into(),
                hostname: hostname.into(),
                ids,
            }),
        }
    }

    /// The `comment` field of a computer.
    pub fn computer_comment(&mut self, id: u64) -> Result<String, GlpiError> {
        let op = format!("read computer {id}");
        let a = self.call(
            Method::Get,
            &format!("Computer/{id}"),
            &[],
            None,
            &[200],
            &op,
        )?;
        let v = Self::json(&a, &op)?;
        Ok(v.get("comment")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string())
    }

    /// `PUT Computer/<id>` with `input` fields.
    pub fn update_computer(&mut self, id: u64, input: Value) -> Result<(), GlpiError> {
        let op = format!("update computer {id}");
        let body = json!({ "input": input });
        let a = self.call(
            Method::Put,
            &format!("Computer/{id}"),
            &[],
            Some(&body),
            &[200],
            &op,
        )?;
        let v = Self::json(&a, &op)?;
        // GLPI answers `[{"<id>": true, "message": ""}]`; `false` means it refused the update.
        let ok = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|o| o.get(id.to_string()))
            .and_then(|b| b.as_bool());
        match ok {
            Some(true) => Ok(()),
            _ => Err(GlpiError::Protocol {
                op,
                detail: format!("update not confirmed: {v}"),
            }),
        }
    }

    /// The ticket whose description contains `marker`, if one exists.
    pub fn find_ticket_by_marker(&mut self, marker: &str) -> Result<Option<u64>, GlpiError> {
        let op = format!("find ticket {marker}");
        // Ticket search option 21 is the description (content).
        let rows = self.search_contains("Ticket", 21, marker, &[2, 21], &op)?;
        Ok(rows
            .iter()
            .filter(|r| {
                r.get("21")
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| s.contains(marker))
            })
            .filter_map(|r| r.get("2").and_then(json_id))
            .min())
    }

    /// `POST Ticket`, filed as type 2 ("request"/demande: planned work, not an incident).
    /// Returns the new id.
    pub fn create_ticket(&mut self, name: &str, content: &str) -> Result<u64, GlpiError> {
        let op = format!("create ticket {name:?}");
        let body = json!({ "input": { "name": name, "content": content, "type": 2 } });
        let a = self.call(Method::Post, "Ticket", &[], Some(&body), &[201, 200], &op)?;
        let v = Self::json(&a, &op)?;
        v.get("id").and_then(json_id).ok_or(GlpiError::Protocol {
            op,
            detail: format!("no id in {v}"),
        })
    }

    /// Fetches every row of a sub-item list (`GET <item>/<id>/<sub>`), following 206 pages.
    fn sub_items(&mut self, path: &str, op: &str) -> Result<Vec<Value>, GlpiError> {
        let mut out = Vec::new();
        let mut start = 0usize;
        loop {
            let range = format!("{}-{}", start, start + self.page_size - 1);
            let a = self.call(
                Method::Get,
                path,
                &[("range".into(), range)],
                None,
                &[200, 206],
                op,
            )?;
            let v = Self::json(&a, op)?;
            let items = match v {
                Value::Array(items) => items,
                other => {
                    return Err(GlpiError::Protocol {
                        op: op.into(),
                        detail: format!("expected a list, got {other}"),
                    });
                }
            };
            let got = items.len();
            out.extend(items);
            if a.status == 200 || got == 0 {
                return Ok(out);
            }
            match a.content_range.as_deref().and_then(parse_content_range) {
                Some((end, total)) if end + 1 < total => start = end + 1,
                _ => return Ok(out),
            }
        }
    }

    /// Computer ids linked to a ticket.
    pub fn ticket_computers(&mut self, ticket: u64) -> Result<Vec<u64>, GlpiError> {
        let op = format!("list computers of ticket {ticket}");
        let items = self.sub_items(&format!("Ticket/{ticket}/Item_Ticket"), &op)?;
        Ok(items
            .iter()
            .filter(|i| i.get("itemtype").and_then(|t| t.as_str()) == Some("Computer"))
            .filter_map(|i| i.get("items_id").and_then(json_id))
            .collect())
    }

    /// Links a computer to a ticket (`POST Item_Ticket`).
    pub fn link_computer(&mut self, ticket: u64, computer: u64) -> Result<(), GlpiError> {
        let op = format!("link computer {computer} to ticket {ticket}");
        let body = json!({ "input": { "itemtype": "Computer", "items_id": computer, "tickets_id": ticket } });
        self.call(
            Method::Post,
            "Item_Ticket",
            &[],
            Some(&body),
            &[201, 200],
            &op,
        )?;
        Ok(())
    }

    /// Contents of a ticket's followups.
    pub fn ticket_followups(&mut self, ticket: u64) -> Result<Vec<String>, GlpiError> {
        let op = format!("list followups of ticket {ticket}");
        let items = self.sub_items(&format!("Ticket/{ticket}/ITILFollowup"), &op)?;
        Ok(items
            .iter()
            .filter_map(|i| {
                i.get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            })
            .collect())
    }

    /// Adds a followup to a ticket (`POST ITILFollowup`). Returns its id.
    pub fn add_followup(&mut self, ticket: u64, content: &str) -> Result<u64, GlpiError> {
        let op = format!("add followup to ticket {ticket}");
        let body =
            json!({ "input": { "itemtype": "Ticket", "items_id": ticket, "content": content } });
        let a = self.call(
            Method::Post,
            "ITILFollowup",
            &[],
            Some(&body),
            &[201, 200],
            &op,
        )?;
        let v = Self::json(&a, &op)?;
        v.get("id").and_then(json_id).ok_or(GlpiError::Protocol {
            op,
            detail: format!("no id in {v}"),
        })
    }
}

/// POSTs a native inventory document to `<url>/front/inventory.php` with the `GLPI-Agent-ID`
/// header. Refuses (without sending) a document that carries personal data.
pub fn send_native_inventory(
    url: &str,
    timeout: Duration,
    agent_id: &str,
    document: &Value,
    encoding: InventoryEncoding,
) -> Result<(), GlpiError> {
    let keys = personal_data_keys(document);
    if !keys.is_empty() {
        return Err(GlpiError::PersonalData {
            agent_id: agent_id.into(),
            keys,
        });
    }
    let op = format!("send inventory of agent {agent_id}");
    let full = format!("{}/front/inventory.php", url.trim_end_matches('/'));
    let json = serde_json::to_vec(document).map_err(|e| GlpiError::Protocol {
        op: op.clone(),
        detail: e.to_string(),
    })?;
    let (ctype, body) = match encoding {
        InventoryEncoding::Json => ("application/json", json),
        InventoryEncoding::Zlib => {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            let zipped = enc
                .write_all(&json)
                .and_then(|_| enc.finish())
                .map_err(|e| GlpiError::Protocol {
                    op: op.clone(),
                    detail: format!("zlib: {e}"),
                })?;
            ("application/x-compress-zlib", zipped)
        }
    };
    let mut resp = agent(timeout)
        .post(&full)
        .header("Content-Type", ctype)
        .header("GLPI-Agent-ID", agent_id)
        .send(&body[..])
        .map_err(|e| transport_error(e, &op, &full, timeout))?;
    let status = resp.status().as_u16();
    let zlib_answer = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("zlib"));
    let raw = resp
        .body_mut()
        .read_to_vec()
        .map_err(|e| transport_error(e, &op, &full, timeout))?;
    let text = if zlib_answer {
        let mut s = Vec::new();
        flate2::read::ZlibDecoder::new(&raw[..])
            .read_to_end(&mut s)
            .map_err(|e| GlpiError::Protocol {
                op: op.clone(),
                detail: format!("zlib answer: {e}"),
            })?;
        s
    } else {
        raw
    };
    let answer: Option<Value> = serde_json::from_slice(&text).ok();
    let field = |k: &str| {
        answer
            .as_ref()
            .and_then(|a| a.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    if status >= 500 {
        return Err(GlpiError::Server {
            op,
            status,
            detail: shorten(&String::from_utf8_lossy(&text)),
        });
    }
    match (status, field("status").as_deref()) {
        (200, Some("ok")) => Ok(()),
        _ => Err(GlpiError::InventoryRejected {
            agent_id: agent_id.into(),
            status,
            message: field("message").unwrap_or_else(|| shorten(&String::from_utf8_lossy(&text))),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_and_error_bodies_parse() {
        assert_eq!(parse_content_range("0-49/120"), Some((49, 120)));
        assert_eq!(parse_content_range("junk"), None);
        assert_eq!(
            error_body(br#"["ERROR_RIGHT_MISSING","You don't have permission"]"#),
            (
                "ERROR_RIGHT_MISSING".into(),
                "You don't have permission".into()
            )
        );
        assert_eq!(error_body(b"<html>oops</html>").1, "<html>oops</html>");
    }
}
