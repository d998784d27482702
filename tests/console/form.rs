//! The console's login form as a client submits it (`GET /login` for the form's cookie and CSRF
//! token, then a form-encoded POST). One home for the console tests and for
//! `examples/bench_console.rs`, which includes this file by path.

/// The first cookie an answer sets, as `name=value` (empty when it sets none).
pub fn set_cookie(r: &ureq::http::Response<ureq::Body>) -> String {
    r.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string()
}

/// The CSRF token a page's form carries.
pub fn csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in the page: {page}"))
        .to_string()
}

/// Logs in as a browser would: the answer's status and the session cookie it sets.
pub fn log_in(agent: &ureq::Agent, url: &str, name: &str, password: &str) -> (u16, String) {
    let mut r = agent.get(&format!("{url}/login")).call().unwrap();
    let cookie = set_cookie(&r);
    let csrf = csrf(&r.body_mut().read_to_string().unwrap());
    let form = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let r = agent
        .post(&format!("{url}/login"))
        .header("cookie", &cookie)
        .content_type("application/x-www-form-urlencoded")
        .send(format!(
            "name={}&password={}&csrf={csrf}",
            form(name),
            form(password)
        ))
        .unwrap();
    (r.status().as_u16(), set_cookie(&r))
}
