//! A GLPI stand-in: a small HTTP/1.1 server on 127.0.0.1 (ephemeral port) that enforces the contract
//! documented in `shared/glpi/README.md` — App-Token and Session-Token headers, write sessions,
//! status codes, `["ERROR_…","…"]` error bodies, substring (`contains`) search with 206 pagination,
//! GETs with a body refused, schema validation and zlib bodies on `/front/inventory.php` — and
//! counts what it was asked, so tests can check nothing was created twice.

use flate2::read::ZlibDecoder;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// The GLPI inventory schema, compiled once.
fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/glpi/inventory.schema.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (CI has shared/ beside the clone)", path.display())
        });
        let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::validator_for(&schema).expect("schema compiles")
    })
}

/// The schema errors of `doc` (empty when valid).
pub fn schema_errors(doc: &Value) -> Vec<String> {
    validator()
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Panics unless `doc` validates against GLPI's inventory schema.
pub fn assert_valid_inventory(doc: &Value) {
    let errors = schema_errors(doc);
    assert!(errors.is_empty(), "invalid inventory: {errors:#?}\n{doc:#}");
}

/// A GLPI computer.
#[derive(Debug, Clone)]
pub struct Computer {
    pub id: u64,
    pub name: String,
    pub serial: String,
    pub comment: String,
}

/// Everything the stand-in holds and how it misbehaves.
#[derive(Debug, Default)]
pub struct State {
    /// Required App-Token (None: the API client has none).
    pub app_token: Option<String>,
    /// The valid user token.
    pub user_token: String,
    /// Open sessions: token -> write allowed.
    pub sessions: HashMap<String, bool>,
    next_id: u64,
    pub computers: Vec<Computer>,
    /// (id, name, content)
    pub tickets: Vec<(u64, String, String)>,
    /// (id, ticket, computer)
    pub item_tickets: Vec<(u64, u64, u64)>,
    /// (id, ticket, content)
    pub followups: Vec<(u64, u64, String)>,
    /// (agent id, document, content type)
    pub inventories: Vec<(String, Value, String)>,
    /// Requests by route, e.g. `POST Ticket`.
    pub counts: HashMap<String, usize>,
    /// Largest page the server returns (GLPI's is 50; small here to force 206).
    pub page_size: usize,
    /// Authenticated calls so far.
    pub session_calls: usize,
    /// Invalidate every session when this many authenticated calls have been made.
    pub expire_sessions_at_call: Option<usize>,
    /// Invalidate the session on every authenticated call (a GLPI that keeps losing sessions).
    pub expire_always: bool,
    /// The next N requests fail with 500.
    pub fail_500: usize,
    /// Sleep this long before answering any request (a slow GLPI).
    pub delay: Option<Duration>,
    /// After doing the work of this route (e.g. `POST ITILFollowup`) once, sleep this long before
    /// answering (the answer is lost to the client's timeout; the work is done).
    pub slow_after: Option<(String, Duration)>,
    /// Itemtypes the account may not create or update.
    pub denied: HashSet<String>,
}

impl State {
    /// A GLPI with these tokens and computers (id, name, serial).
    pub fn new(
        app_token: Option<&str>,
        user_token: &str,
        computers: &[(u64, &str, &str)],
    ) -> State {
        State {
            app_token: app_token.map(str::to_string),
            user_token: user_token.to_string(),
            computers: computers
                .iter()
                .map(|(id, name, serial)| Computer {
                    id: *id,
                    name: name.to_string(),
                    serial: serial.to_string(),
                    comment: String::new(),
                })
                .collect(),
            next_id: 1000,
            page_size: 50,
            ..State::default()
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// How many requests hit `route`.
    pub fn count(&self, route: &str) -> usize {
        self.counts.get(route).copied().unwrap_or(0)
    }
}

/// A running stand-in; stops on drop.
pub struct StandIn {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Starts the server on 127.0.0.1, ephemeral port.
    pub fn start(state: State) -> StandIn {
        Self::start_on(
            TcpListener::bind("127.0.0.1:0").expect("bind loopback"),
            state,
        )
    }

    /// Starts the server on a listener the test already bound (to reuse a port).
    pub fn start_on(listener: TcpListener, state: State) -> StandIn {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve_connection(conn, st));
            }
        });
        StandIn {
            addr,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`, GLPI's root URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Reads or changes the state.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    had_body: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).unwrap(),
    }
}

fn error(status: u16, code: &str, msg: &str) -> Reply {
    reply(status, json!([code, msg]))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let mut body = Vec::new();
    let mut had_body = false;
    if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().ok()?;
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
        had_body = len > 0;
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        had_body = true;
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
    let query = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Request {
        method,
        path: percent_decode(path),
        query,
        headers,
        body,
        had_body,
    })
}

fn serve_connection(conn: TcpStream, state: Arc<Mutex<State>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        let delay = state.lock().unwrap().delay;
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let (rep, after) = {
            let mut st = state.lock().unwrap();
            let rep = handle(&mut st, &req);
            let route = route_name(&req);
            let after = match &st.slow_after {
                Some((r, d)) if *r == route && rep.status < 300 => {
                    let d = *d;
                    st.slow_after = None;
                    Some(d)
                }
                _ => None,
            };
            (rep, after)
        };
        if let Some(d) = after {
            std::thread::sleep(d);
        }
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: keep-alive\r\n",
            rep.status,
            rep.body.len()
        );
        for (k, v) in &rep.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&rep.body).is_err() {
            return;
        }
    }
}

/// `POST Ticket`, `GET search/Computer`, `PUT Computer`, `GET Ticket/ITILFollowup`, `initSession`…
fn route_name(req: &Request) -> String {
    if req.path == "/front/inventory.php" {
        return format!("{} inventory", req.method);
    }
    let rest = req.path.trim_start_matches("/apirest.php/");
    let parts: Vec<&str> = rest
        .split('/')
        .filter(|p| !p.is_empty() && p.parse::<u64>().is_err())
        .collect();
    match parts.as_slice() {
        ["initSession"] | ["killSession"] => parts[0].to_string(),
        _ => format!("{} {}", req.method, parts.join("/")),
    }
}

fn handle(st: &mut State, req: &Request) -> Reply {
    *st.counts.entry(route_name(req)).or_default() += 1;
    if st.fail_500 > 0 {
        st.fail_500 -= 1;
        return Reply {
            status: 500,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html><body>Internal Server Error</body></html>".to_vec(),
        };
    }
    if req.path == "/front/inventory.php" {
        return inventory(st, req);
    }
    let Some(rest) = req.path.strip_prefix("/apirest.php/") else {
        return error(
            404,
            "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM",
            "no such endpoint",
        );
    };
    if req.method == "GET" && req.had_body {
        return error(
            400,
            "ERROR_JSON_PAYLOAD_FORBIDDEN",
            "GET Request should not have json payload (http body)",
        );
    }
    if let Some(app) = &st.app_token
        && req.header("App-Token") != Some(app.as_str())
    {
        return error(
            400,
            "ERROR_WRONG_APP_TOKEN_PARAMETER",
            "parameter app_token seems wrong",
        );
    }
    if rest == "initSession" {
        let Some(tok) = req
            .header("Authorization")
            .and_then(|a| a.strip_prefix("user_token "))
        else {
            return error(
                400,
                "ERROR_LOGIN_PARAMETERS_MISSING",
                "parameter(s) login, password or user_token are missing",
            );
        };
        if tok != st.user_token {
            return error(
                401,
                "ERROR_GLPI_LOGIN_USER_TOKEN",
                "parameter user_token seems invalid",
            );
        }
        let token = format!("sess{}", st.id());
        let write = req.q("session_write") == Some("true");
        st.sessions.insert(token.clone(), write);
        return reply(200, json!({ "session_token": token }));
    }
    let Some(session) = req.header("Session-Token").map(str::to_string) else {
        return error(
            400,
            "ERROR_SESSION_TOKEN_MISSING",
            "parameter session_token is missing or empty",
        );
    };
    st.session_calls += 1;
    if st.expire_always || st.expire_sessions_at_call == Some(st.session_calls) {
        st.sessions.clear();
    }
    let Some(&write) = st.sessions.get(&session) else {
        return error(
            401,
            "ERROR_SESSION_TOKEN_INVALID",
            "session_token seems invalid",
        );
    };
    if rest == "killSession" {
        st.sessions.remove(&session);
        return reply(200, json!([]));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let is_write = req.method == "POST" || req.method == "PUT";
    let input = if is_write {
        if !write {
            return error(
                400,
                "ERROR_SESSION_READ_ONLY",
                "session opened without session_write=true",
            );
        }
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) if v.get("input").is_some_and(Value::is_object) => v["input"].clone(),
            _ => return error(400, "ERROR_BAD_ARRAY", "input parameter must be an object"),
        }
    } else {
        Value::Null
    };
    let itemtype = parts[0];
    if is_write && st.denied.contains(itemtype) {
        return error(
            403,
            "ERROR_RIGHT_MISSING",
            "You don't have permission to perform this action.",
        );
    }
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["search", itemtype]) => search(st, req, itemtype),
        ("GET", ["Computer", id]) => match st.computers.iter().find(|c| id.parse() == Ok(c.id)) {
            Some(c) => reply(
                200,
                json!({"id": c.id, "name": c.name, "serial": c.serial, "comment": c.comment}),
            ),
            None => error(404, "ERROR_ITEM_NOT_FOUND", "Item not found"),
        },
        ("PUT", ["Computer", id]) => {
            let Some(c) = st.computers.iter_mut().find(|c| id.parse() == Ok(c.id)) else {
                return error(404, "ERROR_ITEM_NOT_FOUND", "Item not found");
            };
            if let Some(comment) = input.get("comment").and_then(Value::as_str) {
                c.comment = comment.to_string();
            }
            reply(200, json!([{ id.to_string(): true, "message": "" }]))
        }
        ("POST", ["Ticket"]) => {
            let (Some(name), Some(content)) = (
                input.get("name").and_then(Value::as_str),
                input.get("content").and_then(Value::as_str),
            ) else {
                return error(400, "ERROR_GLPI_ADD", "name and content are mandatory");
            };
            if !matches!(input.get("type").and_then(Value::as_u64), Some(1 | 2)) {
                return error(400, "ERROR_GLPI_ADD", "type must be 1 or 2");
            }
            let id = st.id();
            st.tickets.push((id, name.into(), content.into()));
            reply(201, json!({ "id": id, "message": "" }))
        }
        ("POST", ["Item_Ticket"]) => {
            let ticket = input.get("tickets_id").and_then(Value::as_u64);
            let computer = input.get("items_id").and_then(Value::as_u64);
            let ok_type = input.get("itemtype").and_then(Value::as_str) == Some("Computer");
            match (ticket, computer) {
                (Some(t), Some(c))
                    if ok_type
                        && st.tickets.iter().any(|x| x.0 == t)
                        && st.computers.iter().any(|x| x.id == c) =>
                {
                    let id = st.id();
                    st.item_tickets.push((id, t, c));
                    reply(201, json!({ "id": id, "message": "" }))
                }
                _ => error(400, "ERROR_GLPI_ADD", "unknown ticket or item"),
            }
        }
        ("POST", ["ITILFollowup"]) => {
            let ticket = input.get("items_id").and_then(Value::as_u64);
            let content = input.get("content").and_then(Value::as_str);
            match (ticket, content) {
                (Some(t), Some(c))
                    if input.get("itemtype").and_then(Value::as_str) == Some("Ticket")
                        && st.tickets.iter().any(|x| x.0 == t) =>
                {
                    let id = st.id();
                    st.followups.push((id, t, c.to_string()));
                    reply(201, json!({ "id": id, "message": "" }))
                }
                _ => error(400, "ERROR_GLPI_ADD", "unknown ticket or empty content"),
            }
        }
        ("GET", ["Ticket", id, sub]) => {
            let Ok(t) = id.parse::<u64>() else {
                return error(400, "ERROR_BAD_ARRAY", "bad id");
            };
            if !st.tickets.iter().any(|x| x.0 == t) {
                return error(404, "ERROR_ITEM_NOT_FOUND", "Item not found");
            }
            let all: Vec<Value> = match *sub {
                "Item_Ticket" => st
                    .item_tickets
                    .iter()
                    .filter(|x| x.1 == t)
                    .map(|x| json!({"id": x.0, "tickets_id": x.1, "itemtype": "Computer", "items_id": x.2}))
                    .collect(),
                "ITILFollowup" => st
                    .followups
                    .iter()
                    .filter(|x| x.1 == t)
                    .map(|x| json!({"id": x.0, "itemtype": "Ticket", "items_id": x.1, "content": x.2}))
                    .collect(),
                _ => return error(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "bad sub-item"),
            };
            page(st, req, all, |rows, _| Value::Array(rows))
        }
        _ => error(
            400,
            "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM",
            "unsupported",
        ),
    }
}

/// Applies `range` (clipped to the server's page size) and answers 200, or 206 with Content-Range.
fn page(
    st: &State,
    req: &Request,
    all: Vec<Value>,
    shape: impl Fn(Vec<Value>, usize) -> Value,
) -> Reply {
    let total = all.len();
    let (start, end) = req
        .q("range")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .unwrap_or((0, st.page_size - 1));
    let end = end.min(start + st.page_size - 1);
    let rows: Vec<Value> = all.into_iter().skip(start).take(end + 1 - start).collect();
    let count = rows.len();
    let mut rep = reply(200, shape(rows, total));
    if start + count < total || (start > 0 && count > 0) {
        rep.status = 206;
        rep.headers.push((
            "Content-Range".into(),
            format!("{}-{}/{}", start, start + count.saturating_sub(1), total),
        ));
    }
    rep
}

fn search(st: &State, req: &Request, itemtype: &str) -> Reply {
    let (Some(field), Some(kind), Some(value)) = (
        req.q("criteria[0][field]"),
        req.q("criteria[0][searchtype]"),
        req.q("criteria[0][value]"),
    ) else {
        return error(400, "ERROR_BAD_ARRAY", "criteria missing");
    };
    if kind != "contains" {
        return error(400, "ERROR_BAD_ARRAY", "only `contains` is supported here");
    }
    let needle = value.to_lowercase();
    let rows: Vec<Value> = match (itemtype, field) {
        ("Computer", "5") => st
            .computers
            .iter()
            .filter(|c| c.serial.to_lowercase().contains(&needle))
            .map(|c| json!({"2": c.id, "1": c.name, "5": c.serial}))
            .collect(),
        ("Ticket", "21") => st
            .tickets
            .iter()
            .filter(|t| t.2.to_lowercase().contains(&needle))
            .map(|t| json!({"2": t.0, "1": t.1, "21": t.2}))
            .collect(),
        _ => return error(400, "ERROR_BAD_ARRAY", "unsupported search field"),
    };
    page(st, req, rows, |rows, total| {
        if total == 0 {
            // GLPI omits `data` when nothing matches.
            json!({"totalcount": 0, "count": 0})
        } else {
            json!({"totalcount": total, "count": rows.len(), "data": rows})
        }
    })
}

fn inventory(st: &mut State, req: &Request) -> Reply {
    let ctype = req.header("Content-Type").unwrap_or("").to_string();
    let zlib = ctype.contains("x-compress-zlib");
    let answer = |status: u16, v: Value| -> Reply {
        let json = serde_json::to_vec(&v).unwrap();
        if zlib {
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&json).unwrap();
            Reply {
                status,
                headers: vec![("Content-Type".into(), "application/x-compress-zlib".into())],
                body: enc.finish().unwrap(),
            }
        } else {
            reply(status, v)
        }
    };
    if req.method != "POST" {
        return answer(405, json!({"status": "error", "message": "POST only"}));
    }
    let Some(agent) = req.header("GLPI-Agent-ID").map(str::to_string) else {
        return answer(
            400,
            json!({"status": "error", "message": "GLPI-Agent-ID header missing"}),
        );
    };
    let raw = if zlib {
        let mut out = Vec::new();
        if ZlibDecoder::new(&req.body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return answer(400, json!({"status": "error", "message": "bad zlib body"}));
        }
        out
    } else if ctype.starts_with("application/json") {
        req.body.clone()
    } else {
        return answer(
            400,
            json!({"status": "error", "message": format!("unsupported content type {ctype}")}),
        );
    };
    let doc: Value = match serde_json::from_slice(&raw) {
        Ok(d) => d,
        Err(e) => {
            return answer(
                400,
                json!({"status": "error", "message": format!("JSON: {e}")}),
            );
        }
    };
    let errors = schema_errors(&doc);
    if !errors.is_empty() {
        return answer(
            400,
            json!({"status": "error", "message": format!("JSON does not validate. Violations: {}", errors.join("; "))}),
        );
    }
    st.inventories.push((agent, doc, ctype));
    answer(200, json!({"status": "ok", "expiration": 24}))
}
