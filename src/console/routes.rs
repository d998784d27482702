//! The console's router: pages for technicians behind a session, the teachers' sign-off pages
//! behind their one-time link, static files, and the security headers every answer carries
//! (a Content-Security-Policy allowing only this origin's script and style, no framing, no
//! referrer, no caching of pages).

use super::auth::{self, Auth, Session};
use super::config::{ConsoleConfig, ConsoleError};
use super::{pages, signoff, sse, tls};
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response, Sse};
use axum::routing::{get, post};
use minijinja::{AutoEscape, Environment, Value, context};
use roomcast_proto::procedure::{Action, Timestamp, Verdict};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../templates/console/base.html"),
    ),
    (
        "login.html",
        include_str!("../../templates/console/login.html"),
    ),
    (
        "campaigns.html",
        include_str!("../../templates/console/campaigns.html"),
    ),
    (
        "room.html",
        include_str!("../../templates/console/room.html"),
    ),
    (
        "journal.html",
        include_str!("../../templates/console/journal.html"),
    ),
    (
        "links.html",
        include_str!("../../templates/console/links.html"),
    ),
    (
        "images.html",
        include_str!("../../templates/console/images.html"),
    ),
    (
        "inventory.html",
        include_str!("../../templates/console/inventory.html"),
    ),
    (
        "signoff.html",
        include_str!("../../templates/console/signoff.html"),
    ),
    (
        "message.html",
        include_str!("../../templates/console/message.html"),
    ),
];
const CSS: &str = include_str!("../../templates/console/console.css");
const JS: &str = include_str!("../../templates/console/live.js");

/// The policy of every page: this origin's script and style only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The policy of the report page (a standalone page with its own inline style and no script).
const CSP_REPORT: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'";

/// The console's shared state.
pub struct App {
    /// The configuration.
    pub config: ConsoleConfig,
    /// Sessions and the login rate limit.
    pub auth: Auth,
    templates: Environment<'static>,
    /// Server-sent events sent since start (for the benchmark).
    pub sse_messages: AtomicU64,
}

/// The client's address (the proxy's, behind a reverse proxy).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tls::TlsListener>>
    for ClientAddr
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tls::TlsListener>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ClientAddr
{
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

impl App {
    /// The console's state for `config`.
    pub fn new(config: ConsoleConfig) -> App {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, text) in TEMPLATES {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("console template {name}: {e}"));
        }
        App {
            auth: Auth::new(
                config.technicians.clone(),
                config.ldap.clone().and_then(|l| {
                    super::ldap::Directory::new(l)
                        .map_err(|e| tracing::error!(%e, "directory logins off"))
                        .ok()
                }),
            ),
            config,
            templates: env,
            sse_messages: AtomicU64::new(0),
        }
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Response {
        match self
            .templates
            .get_template(name)
            .and_then(|t| t.render(ctx))
        {
            Ok(html) => page(Html(html).into_response()),
            Err(e) => {
                tracing::error!(template = name, %e, "console page");
                (StatusCode::INTERNAL_SERVER_ERROR, "page error").into_response()
            }
        }
    }

    fn message(&self, status: StatusCode, title: &str, text: &str) -> Response {
        let mut r = self.render("message.html", context! { title, text, user => "" });
        *r.status_mut() = status;
        r
    }
}

/// Adds the security headers of a page.
fn page(mut r: Response) -> Response {
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn now() -> Timestamp {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

/// The router of the console.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/campaigns") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/campaigns", get(campaigns))
        .route("/campaigns/{id}", get(room))
        .route("/campaigns/{id}/live", get(live))
        .route("/campaigns/{id}/chart.svg", get(chart))
        .route("/campaigns/{id}/report", get(report_html))
        .route("/campaigns/{id}/report.md", get(report_md))
        .route("/campaigns/{id}/journal", get(journal))
        .route("/campaigns/{id}/links", post(issue_links))
        .route("/images", get(images))
        .route("/inventory", get(inventory))
        .route("/signoff/{token}", get(signoff_page).post(signoff_submit))
        .route(
            "/static/console.css",
            get(|| async { static_file("text/css", CSS) }),
        )
        .route(
            "/static/live.js",
            get(|| async { static_file("text/javascript", JS) }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(app)
}

fn static_file(kind: &'static str, body: &'static str) -> Response {
    page(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// The technician's session, or the answer refusing the request (a page asks for the login; an
/// API call or a form gets 401/403).
fn session(app: &App, headers: &HeaderMap) -> Option<Session> {
    let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
    app.auth.session(auth::cookie_value(cookie)?)
}

fn to_login() -> Response {
    page(Redirect::to("/login").into_response())
}

fn forbidden(app: &App, why: &str) -> Response {
    app.message(StatusCode::FORBIDDEN, "Refused", why)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

const LOGIN_COOKIE: &str = "__Host-roomcast-login";

async fn login_page(State(app): State<Arc<App>>) -> Response {
    login_form(&app, "")
}

/// The login form with a fresh pre-session CSRF token, set as its cookie; `error` shown above it.
fn login_form(app: &App, error: &str) -> Response {
    let token = auth::random_token();
    let mut r = app.render(
        "login.html",
        context! { csrf => &token, error => error, user => "" },
    );
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{LOGIN_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=600"
        ))
        .expect("ascii"),
    );
    r
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(ClientAddr(client)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .map(str::trim)
                .find_map(|kv| kv.strip_prefix(LOGIN_COOKIE)?.strip_prefix('='))
        })
        .unwrap_or("");
    if f.csrf.is_empty() || !auth::same(cookie, &f.csrf) {
        return forbidden(
            &app,
            "The form's token is missing or wrong: reload the login page.",
        );
    }
    let app2 = app.clone();
    let client = client.ip().to_string();
    let result = blocking(move || app2.auth.login(&client, &f.name, &f.password)).await;
    match result {
        Some(Ok((id, _))) => {
            let mut r = Redirect::to("/campaigns").into_response();
            r.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_str(&auth::session_cookie(&id)).expect("ascii"),
            );
            page(r)
        }
        Some(Err(auth::LoginRefused::RateLimited)) => app.message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many failed logins lately: wait a few minutes.",
        ),
        _ => {
            let mut r = login_form(&app, "Wrong name or password.");
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn check_csrf(app: &App, headers: &HeaderMap, csrf: &str) -> Result<Session, Box<Response>> {
    let Some(s) = session(app, headers) else {
        return Err(Box::new(forbidden(app, "You are not logged in.")));
    };
    if csrf.is_empty() || !auth::same(&s.csrf, csrf) {
        tracing::warn!(user = %s.user, "console form without a valid CSRF token refused");
        return Err(Box::new(forbidden(
            app,
            "The form's token is missing or wrong: reload the page.",
        )));
    }
    Ok(s)
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = check_csrf(&app, &headers, &f.csrf) {
        return *r;
    }
    if let Some(id) = headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(auth::cookie_value)
    {
        app.auth.logout(id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&auth::cleared_cookie()).expect("ascii"),
    );
    page(r)
}

fn error_page(app: &App, e: impl std::fmt::Display) -> Response {
    app.message(StatusCode::NOT_FOUND, "Not available", &e.to_string())
}

async fn campaigns(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(s) = session(&app, &headers) else {
        return to_login();
    };
    let db = app.config.db.clone();
    match blocking(move || pages::campaigns(&db)).await {
        Some(Ok(rows)) => app.render(
            "campaigns.html",
            context! { rows => Value::from(minijinja::value::Serde(&rows)), user => s.user, csrf => s.csrf },
        ),
        Some(Err(e)) => error_page(&app, e),
        None => error_page(&app, "internal error"),
    }
}

async fn room(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    let Some(s) = session(&app, &headers) else {
        return to_login();
    };
    let (db, store) = (app.config.db.clone(), app.config.store.clone());
    match blocking(move || pages::room(&db, store.as_deref(), id)).await {
        Some(Ok(view)) => app.render(
            "room.html",
            context! { view => Value::from(minijinja::value::Serde(&view)), user => s.user, csrf => s.csrf },
        ),
        Some(Err(e)) => error_page(&app, e),
        None => error_page(&app, "internal error"),
    }
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since: i64,
}

async fn live(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
    Query(q): Query<Since>,
) -> Response {
    if session(&app, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    }
    page(
        Sse::new(sse::stream(app.clone(), id, q.since))
            .keep_alive(axum::response::sse::KeepAlive::default())
            .into_response(),
    )
}

async fn chart(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    if session(&app, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    }
    let (db, store) = (app.config.db.clone(), app.config.store.clone());
    let svg = move || -> Result<String, pages::PageError> {
        let (_, facts, _) = pages::facts(&db, store.as_deref(), id)?;
        Ok(pages::chart(&facts, &pages::live(&db, id)?))
    };
    match blocking(svg).await {
        Some(Ok(svg)) => page(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn report_html(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    if session(&app, &headers).is_none() {
        return to_login();
    }
    let (db, store) = (app.config.db.clone(), app.config.store.clone());
    match blocking(move || pages::facts(&db, store.as_deref(), id)).await {
        Some(Ok((state, facts, _))) => {
            let mut r = Html(crate::campaign::report::html(&state, &facts)).into_response();
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP_REPORT),
            );
            page(r)
        }
        Some(Err(e)) => error_page(&app, e),
        None => error_page(&app, "internal error"),
    }
}

async fn report_md(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    if session(&app, &headers).is_none() {
        return to_login();
    }
    let (db, store) = (app.config.db.clone(), app.config.store.clone());
    match blocking(move || pages::facts(&db, store.as_deref(), id)).await {
        Some(Ok((state, facts, _))) => page(
            (
                [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                crate::campaign::report::markdown_with(&state, &facts),
            )
                .into_response(),
        ),
        Some(Err(e)) => error_page(&app, e),
        None => error_page(&app, "internal error"),
    }
}

async fn journal(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
) -> Response {
    let Some(s) = session(&app, &headers) else {
        return to_login();
    };
    let db = app.config.db.clone();
    let data = blocking(move || {
        let lines = pages::journal(&db, id)?;
        let links = signoff::links(&db, id).unwrap_or_default();
        Ok::<_, pages::PageError>((lines, links))
    })
    .await;
    match data {
        Some(Ok((lines, links))) => {
            let links: Vec<_> = links
                .iter()
                .map(|l| {
                    context! {
                        teacher => &l.teacher,
                        issued => Timestamp(l.issued_at).to_string(),
                        expires => Timestamp(l.expires_at).to_string(),
                        used => l.used_at.map(|t| Timestamp(t).to_string()).unwrap_or_default(),
                    }
                })
                .collect();
            app.render(
                "journal.html",
                context! { id, lines => Value::from(minijinja::value::Serde(&lines)), links, user => s.user, csrf => s.csrf },
            )
        }
        Some(Err(e)) => error_page(&app, e),
        None => error_page(&app, "internal error"),
    }
}

/// Issues the sign-off links of a campaign at e; the page shows them once (they are stored
/// hashed). Each technician sees them: handing them to the teachers is the technician's job.
async fn issue_links(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match check_csrf(&app, &headers, &f.csrf) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (db, days) = (app.config.db.clone(), app.config.link_days);
    let deadline = move || crate::campaign::run::saved_deadline(&db, id);
    let db = app.config.db.clone();
    match blocking(move || signoff::issue(&db, id, now(), deadline(), days)).await {
        Some(Ok(links)) => {
            tracing::info!(user = %s.user, campaign = id, n = links.len(), "sign-off links issued");
            let base = app.config.public_url.trim_end_matches('/').to_string();
            let links: Vec<_> = links
                .iter()
                .map(|l| {
                    context! {
                        teacher => &l.teacher,
                        url => format!("{base}/signoff/{}", l.token),
                        expires => l.expires_at.to_string(),
                    }
                })
                .collect();
            app.render(
                "links.html",
                context! { id, links, user => s.user, csrf => s.csrf },
            )
        }
        Some(Err(e)) => app.message(StatusCode::CONFLICT, "No links issued", &e.to_string()),
        None => error_page(&app, "internal error"),
    }
}

async fn images(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(s) = session(&app, &headers) else {
        return to_login();
    };
    let Some(store) = app.config.store.clone() else {
        return app.message(
            StatusCode::NOT_FOUND,
            "No store",
            "The console's configuration names no image store (`store:`).",
        );
    };
    let db = app.config.db.clone();
    match blocking(move || pages::images(&db, &store)).await {
        Some(Ok(rows)) => app.render(
            "images.html",
            context! { rows => Value::from(minijinja::value::Serde(&rows)), user => s.user, csrf => s.csrf },
        ),
        Some(Err(e)) => error_page(&app, e),
        None => error_page(&app, "internal error"),
    }
}

#[derive(Deserialize)]
struct RoomQuery {
    room: Option<String>,
}

async fn inventory(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<RoomQuery>,
) -> Response {
    let Some(s) = session(&app, &headers) else {
        return to_login();
    };
    let db = app.config.db.clone();
    let room = q.room.filter(|r| !r.is_empty());
    let r2 = room.clone();
    match blocking(move || pages::inventory(&db, r2.as_deref())).await {
        Some(Ok(view)) => app.render(
            "inventory.html",
            context! { view => Value::from(minijinja::value::Serde(&view)), room => room.unwrap_or_default(), user => s.user, csrf => s.csrf },
        ),
        Some(Err(e)) => error_page(&app, e),
        None => error_page(&app, "internal error"),
    }
}

/// The CSRF token of a sign-off form: derived from the link's token (which only its holder knows).
fn link_csrf(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        format!("roomcast-signoff-form:{token}").as_bytes(),
    ))
}

async fn signoff_page(State(app): State<Arc<App>>, UrlPath(token): UrlPath<String>) -> Response {
    let db = app.config.db.clone();
    let t = token.clone();
    let found = blocking(move || {
        signoff::lookup(&db, &t, now())
            .map(|(link, state)| pages::signoff_view(&db, link.campaign, &link.teacher, &state))
    })
    .await;
    match found {
        Some(Ok(view)) => app.render(
            "signoff.html",
            context! { view => Value::from(minijinja::value::Serde(&view)), csrf => link_csrf(&token), user => "" },
        ),
        Some(Err(e)) => {
            tracing::warn!(%e, "sign-off link refused");
            forbidden(&app, &e.to_string())
        }
        None => error_page(&app, "internal error"),
    }
}

#[derive(Deserialize)]
struct SignoffForm {
    #[serde(default)]
    csrf: String,
    verdict: String,
    #[serde(default)]
    comment: String,
}

async fn signoff_submit(
    State(app): State<Arc<App>>,
    UrlPath(token): UrlPath<String>,
    Form(f): Form<SignoffForm>,
) -> Response {
    if f.csrf.is_empty() || !auth::same(&f.csrf, &link_csrf(&token)) {
        return forbidden(
            &app,
            "The form's token is missing or wrong: open your link again.",
        );
    }
    let verdict = match f.verdict.as_str() {
        "works" => Verdict::Ok,
        "fails" => Verdict::Rejected,
        _ => return forbidden(&app, "Choose \"works\" or \"does not work\"."),
    };
    let db = app.config.db.clone();
    let comment = Some(f.comment);
    let result = blocking(move || signoff::redeem(&db, &token, verdict, comment, now())).await;
    match result {
        Some(Ok((link, _, actions))) => {
            if let Some(Action::Rejected { reason }) = actions.first() {
                return forbidden(&app, reason);
            }
            resume(&app, link.campaign);
            let text = match verdict {
                Verdict::Ok => "Thank you: your sign-off is recorded. The room will be imaged.",
                Verdict::Rejected => {
                    "Thank you: your answer is recorded. The technician will rework the master."
                }
            };
            app.message(StatusCode::OK, "Recorded", text)
        }
        Some(Err(e)) => {
            tracing::warn!(%e, "sign-off refused");
            forbidden(&app, &e.to_string())
        }
        None => error_page(&app, "internal error"),
    }
}

/// After an accepted sign-off, goes on as `roomcast campaign resume` would, when the config says
/// how (`resume_args`): the same command, as a child process writing its log next to the journal.
fn resume(app: &App, id: i64) {
    let Some(args) = &app.config.resume_args else {
        return;
    };
    let db = &app.config.db;
    let log = crate::campaign::run::campaign_dir(db, id).join("console-resume.log");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log);
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("campaign")
        .arg("--db")
        .arg(db)
        .arg("resume")
        .arg(id.to_string())
        .args(args)
        .stdin(std::process::Stdio::null());
    if let Ok(out) = out {
        if let Ok(err) = out.try_clone() {
            cmd.stderr(err);
        }
        cmd.stdout(out);
    }
    match cmd.spawn() {
        Ok(mut child) => {
            tracing::info!(campaign = id, pid = child.id(), log = %log.display(), "campaign resumed after sign-off");
            // Reap it when it ends, so no zombie stays behind.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => tracing::error!(campaign = id, %e, "cannot resume the campaign"),
    }
}

/// Runs the console until the process ends. Generates the certificate at first start when the
/// config names none. Returns the address bound (through `bound`) once listening.
pub async fn serve(
    config: ConsoleConfig,
    bound: impl FnOnce(SocketAddr),
) -> Result<(), ConsoleError> {
    let addr = config.listen;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Net { addr, source })?;
    let local = tcp
        .local_addr()
        .map_err(|source| ConsoleError::Net { addr, source })?;
    let plain = config.plain_http_behind_proxy;
    let tls_config = if plain {
        None
    } else {
        tls::ensure_certificate(&config)?;
        let (cert, key) = tls::cert_files(&config);
        Some(tls::server_config(&cert, &key)?)
    };
    let app = Arc::new(App::new(config));
    let make = router(app).into_make_service_with_connect_info::<ClientAddr>();
    bound(local);
    let result = match tls_config {
        None => axum::serve(tcp, make).await,
        Some(c) => {
            let listener = tls::TlsListener::new(tcp, c)
                .map_err(|source| ConsoleError::Net { addr, source })?;
            axum::serve(listener, make).await
        }
    };
    result.map_err(|source| ConsoleError::Net { addr, source })
}
