//! The HTTP side of a network capture (step f): the routes `GET /capture/plan`, `HEAD|PUT
//! /capture/chunks/<sha256>` and `POST /capture/finish` (see [`crate::net::capture`] for what each
//! checks), behind the live token of the one machine the session captures.

use crate::net::capture::{CaptureRefused, CaptureSink};
use crate::net::http::{BootService, live_token};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use roomcast_proto::contract::{self, CaptureDone, CaptureFinish};
use roomcast_store::chunk::ChunkHash;
use serde::Deserialize;
use std::sync::Arc;

/// Largest `POST /capture/finish` body: ~70 bytes per chunk of a 2 TiB disk in 1 MiB chunks.
const MAX_FINISH: usize = 256 << 20;

/// The capture routes, merged into [`crate::net::router`].
pub(crate) fn routes() -> Router<Arc<BootService>> {
    let max_frame = zstd::zstd_safe::compress_bound(roomcast_store::chunk::MAX_CHUNK_SIZE as usize);
    Router::new()
        .route(contract::path::CAPTURE_PLAN, get(plan))
        .route(
            "/capture/chunks/{sha256}",
            head(has_chunk)
                .put(put_chunk)
                .layer(DefaultBodyLimit::max(max_frame)),
        )
        .route(
            contract::path::CAPTURE_FINISH,
            post(finish).layer(DefaultBodyLimit::max(MAX_FINISH)),
        )
}

/// The session's sink, if the request carries the live token of its machine.
fn sink<'a>(
    s: &'a BootService,
    headers: &HeaderMap,
    what: &str,
) -> Result<&'a CaptureSink, (StatusCode, String)> {
    let mac = live_token(s, headers, what)?;
    let Some(sink) = s.capture_sink() else {
        return Err((
            StatusCode::NOT_FOUND,
            "this session accepts no capture\n".into(),
        ));
    };
    if sink.machine() != mac {
        tracing::warn!(%mac, what, "capture request from a machine that is not the master");
        return Err((
            StatusCode::FORBIDDEN,
            format!("{mac} is not the machine this session captures\n"),
        ));
    }
    Ok(sink)
}

fn chunk_name(name: &str) -> Option<ChunkHash> {
    let valid = name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then(|| name.parse().ok()).flatten()
}

async fn plan(State(s): State<Arc<BootService>>, headers: HeaderMap) -> Response {
    match sink(&s, &headers, "capture plan") {
        Ok(sink) => axum::Json(sink.plan()).into_response(),
        Err(r) => r.into_response(),
    }
}

async fn has_chunk(
    State(s): State<Arc<BootService>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let sink = match sink(&s, &headers, "capture chunk") {
        Ok(sink) => sink,
        Err(r) => return r.into_response(),
    };
    match chunk_name(&name) {
        Some(h) if sink.has(&h) => StatusCode::OK.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `?index=I&len=L` of an upload.
#[derive(Debug, Deserialize)]
struct Placement {
    index: u64,
    len: u64,
}

async fn put_chunk(
    State(s): State<Arc<BootService>>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    Query(at): Query<Placement>,
    body: Bytes,
) -> Response {
    if let Err(r) = sink(&s, &headers, "capture upload") {
        return r.into_response();
    }
    let Some(hash) = chunk_name(&name) else {
        return (
            StatusCode::NOT_FOUND,
            "want /capture/chunks/<64 lowercase hex>\n",
        )
            .into_response();
    };
    let service = s.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let sink = service.capture_sink().expect("checked above");
        sink.accept_chunk(at.index, at.len, hash, &body)
    })
    .await;
    match outcome {
        Ok(Ok(new)) => {
            tracing::debug!(chunk = %hash, index = at.index, new, "capture chunk stored");
            (StatusCode::CREATED, "stored\n").into_response()
        }
        Ok(Err(e)) => refused(&e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn finish(State(s): State<Arc<BootService>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = sink(&s, &headers, "capture finish") {
        return r.into_response();
    }
    let request: CaptureFinish = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("capture refused: finish body: {e}\n"),
            )
                .into_response();
        }
    };
    let service = s.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        service
            .capture_sink()
            .expect("checked above")
            .finish(&request)
    })
    .await;
    match outcome {
        Ok(Ok(id)) => {
            tracing::info!(image = %id, "capture signed");
            axum::Json(CaptureDone { image: id.to_hex() }).into_response()
        }
        Ok(Err(e)) => refused(&e),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn refused(e: &CaptureRefused) -> Response {
    tracing::warn!(%e, "capture request refused");
    let status = if e.is_server_side() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, format!("{e}\n")).into_response()
}
