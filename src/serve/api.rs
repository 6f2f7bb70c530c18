//! The routes: `GET /` (the page), `GET /healthz`, `POST /api/caption`, `POST /api/ratings`,
//! `GET /api/ratings/export`. Every error is `{"error": "..."}` with the status that says what
//! went wrong: 400 bad image or bad field, 408 body too slow, 413 too large, 415 not an image,
//! 503 busy or timed out.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Query, Request, State as Shared};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::upload;
use super::worker::Options;
use super::State;
use crate::config::defaults;
use crate::model::decoding::{query_field, DecodeRequest, SERVER_MAX_BEAM};

const PAGE: &str = include_str!("page.html");

pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/api/caption", post(caption))
        .route("/api/ratings", post(rate))
        .route("/api/ratings/export", get(export))
        // Unknown paths and methods answer in JSON like every other error.
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are bounded by hand in `read_body` (so the 413 is JSON too).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(404, format!("no such endpoint: {}", req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        405,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// A JSON error response.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: u16, msg: impl Into<String>) -> Self {
        ApiError(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            msg.into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

async fn page() -> Response {
    let mut r = PAGE.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

async fn healthz(Shared(s): Shared<Arc<State>>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "run_id": s.config.run_id,
        "in_flight": s.in_flight.load(Ordering::Relaxed),
        "queue": s.config.queue,
    }))
}

#[derive(Debug, Default, Deserialize)]
pub struct CaptionQuery {
    beam: Option<usize>,
    top_p: Option<f64>,
    temperature: Option<f64>,
    samples: Option<usize>,
    seed: Option<u64>,
    hashtags: Option<usize>,
    emoji: Option<usize>,
    style: Option<String>,
}

impl CaptionQuery {
    /// The query as a validated job: the decoding by the CLI's rule ([`DecodeRequest`]), with
    /// the server's own cap on beam width; unset fields take the CLI's defaults (`beam`: the
    /// server's `--beam`).
    fn options(&self, default_beam: usize) -> Result<Options, ApiError> {
        let beam = self.beam.unwrap_or(default_beam);
        if !(1..=SERVER_MAX_BEAM).contains(&beam) {
            return Err(ApiError::new(
                400,
                format!("beam must be 1 to {SERVER_MAX_BEAM}, not {beam}"),
            ));
        }
        let d = DecodeRequest::default();
        let request = DecodeRequest {
            beam,
            top_p: self.top_p,
            temperature: self.temperature.unwrap_or(d.temperature),
            samples: self.samples.unwrap_or(d.samples),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        };
        let decoding = request
            .validate(query_field)
            .map_err(|e| ApiError::new(400, e.to_string()))?;
        let social = match self.style.as_deref() {
            None | Some("plain") => false,
            Some("social") => true,
            Some(other) => {
                return Err(ApiError::new(
                    400,
                    format!("style must be plain or social, not {other:?}"),
                ))
            }
        };
        Ok(Options {
            decoding,
            // Server-side caps on what one answer lists.
            hashtags: self.hashtags.unwrap_or(defaults::HASHTAGS_SHOWN).min(30),
            emoji: self.emoji.unwrap_or(defaults::EMOJI_SHOWN).min(10),
            social,
        })
    }
}

/// The whole body, at most `limit` bytes (413 past it), within the request timeout (408).
async fn read_body(body: Body, s: &State) -> Result<Bytes, ApiError> {
    let limit = s.config.max_upload_bytes;
    let too_big = || ApiError::new(413, format!("upload is over the {} MiB limit", limit >> 20));
    match tokio::time::timeout(s.config.timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::new(408, "the upload took too long")),
        Ok(Err(e)) => {
            // axum does not re-export http-body-util's LengthLimitError: find it by message
            // anywhere in the chain.
            let mut cause: Option<&dyn std::error::Error> = Some(&e);
            while let Some(c) = cause {
                if c.to_string().contains("length limit exceeded") {
                    return Err(too_big());
                }
                cause = c.source();
            }
            Err(ApiError::new(400, format!("cannot read the upload: {e}")))
        }
        Ok(Ok(b)) => Ok(b),
    }
}

/// A declared Content-Length over the limit is refused before reading a byte.
fn check_length(headers: &axum::http::HeaderMap, s: &State) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(n) if n > s.config.max_upload_bytes => Err(ApiError::new(
            413,
            format!(
                "upload is over the {} MiB limit",
                s.config.max_upload_bytes >> 20
            ),
        )),
        _ => Ok(()),
    }
}

/// The image bytes of a multipart form (field `image`, or the first file field) or a raw body.
async fn image_bytes(req: Request, s: &State) -> Result<Bytes, ApiError> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    check_length(req.headers(), s)?;
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, s).await?;
    if !is_multipart {
        return Ok(bytes);
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::new(400, format!("bad multipart form: {e}")))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::new(400, format!("bad multipart form: {e}")))?
    {
        if field.name() == Some("image") || field.file_name().is_some() {
            return field
                .bytes()
                .await
                .map_err(|e| ApiError::new(400, format!("bad multipart form: {e}")));
        }
    }
    Err(ApiError::new(400, "the form has no `image` file field"))
}

async fn caption(
    Shared(s): Shared<Arc<State>>,
    q: Result<Query<CaptionQuery>, axum::extract::rejection::QueryRejection>,
    req: Request,
) -> Result<Json<crate::infer::CaptionResult>, ApiError> {
    // A bad query string is a JSON 400 like every other error (axum's own is plain text).
    let Query(q) =
        q.map_err(|e| ApiError::new(400, format!("bad query string: {}", e.body_text())))?;
    let options = q.options(s.config.beam)?;
    let bytes = image_bytes(req, &s).await?;
    let max_pixels = s.config.max_pixels;
    let checked = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || upload::check(&bytes, max_pixels))
            .await
            .map_err(|e| ApiError::new(500, format!("upload check failed: {e}")))?
    };
    let up = checked.map_err(|r| ApiError::new(r.status(), r.message()))?;
    if let Some(dir) = &s.config.keep_images {
        let path = dir.join(format!("{}.{}", up.sha256, up.ext));
        if !path.exists() {
            let bytes = bytes.clone();
            tokio::task::spawn_blocking(move || crate::fsio::write_atomic(&path, &bytes, true))
                .await
                .map_err(|e| ApiError::new(500, e.to_string()))?
                .map_err(|e| ApiError::new(500, format!("cannot keep the image: {e}")))?;
        }
    }
    let rx = s.queue.submit(up.image, options).map_err(|_| {
        ApiError::new(
            503,
            "the server is busy: too many images waiting; try again shortly",
        )
    })?;
    s.in_flight.fetch_add(1, Ordering::Relaxed);
    let answer = tokio::time::timeout(s.config.timeout, rx).await;
    s.in_flight.fetch_sub(1, Ordering::Relaxed);
    let captions = match answer {
        Err(_) => {
            return Err(ApiError::new(
                503,
                "captioning timed out; try again shortly",
            ))
        }
        Ok(Err(_)) => return Err(ApiError::new(500, "the model thread stopped")),
        Ok(Ok(Err(e))) => return Err(ApiError::new(500, e.to_string())),
        Ok(Ok(Ok(c))) => c,
    };
    let mut r = captions;
    r.image_sha256 = Some(up.sha256);
    r.run_id = Some(s.config.run_id.clone());
    r.style = Some(if options.social { "social" } else { "plain" });
    r.text = if options.social {
        r.social.clone()
    } else {
        r.caption.clone()
    };
    Ok(Json(r))
}

async fn rate(
    Shared(s): Shared<Arc<State>>,
    req: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_length(req.headers(), &s)?;
    let bytes = read_body(req.into_body(), &s).await?;
    let mut r: super::db::Rating = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(400, format!("bad rating JSON: {e}")))?;
    if r.run_id.is_empty() {
        r.run_id = s.config.run_id.clone();
    }
    if let Some(p) = r.problem() {
        return Err(ApiError::new(400, p));
    }
    let s2 = s.clone();
    let id = tokio::task::spawn_blocking(move || {
        let db = s2.db.lock().unwrap_or_else(|p| p.into_inner());
        db.add(&r)
    })
    .await
    .map_err(|e| ApiError::new(500, e.to_string()))?
    .map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(Json(json!({ "id": id })))
}

async fn export(Shared(s): Shared<Arc<State>>) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = tokio::task::spawn_blocking(move || {
        let db = s.db.lock().unwrap_or_else(|p| p.into_inner());
        db.all()
    })
    .await
    .map_err(|e| ApiError::new(500, e.to_string()))?
    .map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(Json(json!({ "ratings": rows })))
}
