//! The web console (issue 16): the page a technician keeps open during a night run and reads in the
//! morning, and the page a teacher opens from a sign-off link (step e).
//!
//! `roomcast console serve` runs it as its own long-lived service, bound to one address of the
//! school's admin side (never the room interface: that belongs to one campaign's `serve`), over HTTPS
//! (rustls; the certificate from the config or generated at first start, [`tls`]), or plain HTTP on
//! loopback behind a reverse proxy. Pages are rendered on the server (minijinja, autoescape on;
//! templates in `templates/console/`), a few lines of plain JavaScript follow a room live over
//! server-sent events ([`sse`]); everything works with JavaScript off except the live refresh.
//!
//! Modules: [`config`] (the YAML file), [`auth`] (technicians' passwords, sessions, CSRF, rate
//! limit), [`ldap`] (technicians' login against the region's AD, LDAPS/StartTLS), [`routes`] (the router and its security headers), [`pages`] (what each page shows),
//! [`sse`] (the live room), [`signoff`] (teachers' one-time links), [`tls`] (certificate and
//! listener).

pub mod auth;
pub mod config;
pub mod ldap;
pub mod pages;
pub mod routes;
pub mod signoff;
pub mod sse;
pub mod tls;

pub use config::{ConsoleConfig, ConsoleError};
pub use routes::{App, serve};
