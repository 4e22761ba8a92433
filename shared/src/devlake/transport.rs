//! The request core every resource call goes through: one logical request with its retries
//! (`execute`), one attempt on the wire (`attempt`), JSON encoding and decoding, and the lazy
//! page-by-page listing the resource streams are built on.

use std::sync::atomic::Ordering;
use std::time::Instant;

use async_stream::try_stream;
use futures::stream::{BoxStream, StreamExt};
use futures::Future;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::{DevLakeClient, Result};
use super::error::DevLakeError;
use super::http::*;
use super::models::ErrorEnvelope;
use super::tls::is_unknown_issuer;

impl DevLakeClient {
    /// Send one logical request, retrying idempotent methods on 5xx, 429 and transport errors.
    /// `accept` says which answers besides a 2xx are returned rather than turned into errors
    /// (see [`Accept`]).
    pub(super) async fn execute(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        accept: Accept,
    ) -> Result<Answer> {
        let inner = &*self.inner;
        let shown = path_with_query(path, query);
        let url = join_url(&inner.base, &shown);
        let retries = if is_idempotent(&method) {
            inner.retry.max_retries
        } else {
            0
        };
        let mut attempt: u32 = 0;
        // Whether the one retry with a re-read key after a 401/403 was spent.
        let mut key_reread = false;
        loop {
            attempt += 1;
            let key = match &inner.key_source {
                Some(source) => Some(source.current().await),
                None => inner.api_key.clone(),
            };
            let outcome = self
                .attempt(
                    &method,
                    &url,
                    &shown,
                    body.as_ref(),
                    attempt,
                    key.as_deref(),
                    accept.counts_as_read(&method),
                )
                .await;
            let mut retry_after = None;
            let error = match outcome {
                Ok(answer) if answer.status.is_success() => return Ok(answer),
                Ok(answer) if answer.status.is_redirection() => {
                    return Err(DevLakeError::Redirect {
                        status: answer.status.as_u16(),
                        method: method.to_string(),
                        path: shown,
                        location: answer
                            .location
                            .as_deref()
                            .map(redact_location)
                            .unwrap_or_else(|| "(no Location header)".to_string()),
                    })
                }
                Ok(answer)
                    if accept == Accept::JsonNotFound
                        && answer.status == StatusCode::NOT_FOUND
                        && serde_json::from_slice::<ErrorEnvelope>(&answer.body).is_ok() =>
                {
                    return Ok(answer)
                }
                Ok(answer)
                    if accept == Accept::HandlerVerdict
                        && is_handler_verdict(answer.status.as_u16(), &answer.body) =>
                {
                    return Ok(answer)
                }
                Ok(answer) => {
                    if matches!(answer.status.as_u16(), 429 | 503) {
                        retry_after = answer
                            .retry_after
                            .as_deref()
                            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                    }
                    classify_status(
                        answer.status.as_u16(),
                        method.as_str(),
                        &shown,
                        &answer.body,
                        key.as_deref(),
                    )
                }
                Err(e) => e,
            };
            // A rotated key: DevLake refused the one we had, so read it again and try once more.
            // Safe for a POST too: DevLake checks the key before the handler runs.
            if let (DevLakeError::Unauthorized { .. }, Some(source), Some(used), false) =
                (&error, &inner.key_source, key.as_deref(), key_reread)
            {
                key_reread = true;
                if source.after_rejection(used).await != used {
                    tracing::info!(
                        method = %method,
                        path = %shown,
                        "DevLake refused the API key; trying once more with the key read again"
                    );
                    continue;
                }
            }
            if attempt > retries + u32::from(key_reread) || !error.is_retryable() {
                return Err(error);
            }
            // DevLake (or the proxy in front of it) said when to come back: wait that long if
            // the cap and the run's deadline allow, else give up now rather than retry early.
            let delay = match retry_after {
                Some(wait) if wait > inner.max_retry_after || !self.deadline.allows(wait) => {
                    tracing::debug!(
                        method = %method,
                        path = %shown,
                        retry_after_ms = wait.as_millis() as u64,
                        "Retry-After does not fit before the deadline; not retrying"
                    );
                    return Err(error);
                }
                Some(wait) => wait,
                None => inner.retry.delay(attempt - 1, random_u64()),
            };
            if !self.deadline.allows(delay) {
                return Err(error);
            }
            tracing::debug!(
                method = %method,
                path = %shown,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "retrying DevLake request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: wait for a permit and the rate limit, count it (as a read or a write),
    /// send, read the whole body.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn attempt(
        &self,
        method: &Method,
        url: &str,
        shown: &str,
        body: Option<&Vec<u8>>,
        attempt: u32,
        key: Option<&str>,
        read: bool,
    ) -> Result<Answer> {
        let inner = &*self.inner;
        let _permit = inner
            .permits
            .acquire()
            .await
            .expect("the client never closes its semaphore");
        // One attempt may not outlast the run: it gets what is left of the deadline when that
        // is less than `DEVLAKE_TIMEOUT_MS`, and is not sent at all with nothing left.
        let deadline_error = || DevLakeError::Deadline {
            method: method.to_string(),
            path: shown.to_string(),
        };
        let timeout = match self.deadline.left() {
            None => inner.request_timeout,
            Some(left) if left.is_zero() => return Err(deadline_error()),
            Some(left) => inner.request_timeout.min(left),
        };
        let cut_by_deadline = timeout < inner.request_timeout;
        if read {
            inner.reads.fetch_add(1, Ordering::Relaxed);
        } else {
            inner.writes.fetch_add(1, Ordering::Relaxed);
        }

        let mut request = inner.http.request(method.clone(), url).timeout(timeout);
        let auth = match (&inner.key_source, key) {
            (Some(_), Some(key)) => Some(bearer(key)?),
            _ => inner.auth.clone(),
        };
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }

        let started = Instant::now();
        let transport = |source: reqwest::Error| {
            // The path is already in the error; the URL would only repeat the endpoint.
            let source = source.without_url();
            if cut_by_deadline && source.is_timeout() {
                deadline_error()
            } else if is_unknown_issuer(&source) {
                DevLakeError::UntrustedCertificate {
                    method: method.to_string(),
                    path: shown.to_string(),
                    bundle: inner.ca_bundle.clone(),
                    source,
                }
            } else {
                DevLakeError::Transport {
                    method: method.to_string(),
                    path: shown.to_string(),
                    source,
                }
            }
        };
        let limit = inner.max_response_bytes;
        let too_large = || DevLakeError::BodyTooLarge {
            method: method.to_string(),
            path: shown.to_string(),
            limit,
        };
        let result = async {
            let mut response = request.send().await.map_err(transport)?;
            let status = response.status();
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let location = header(reqwest::header::LOCATION);
            let retry_after = header(reqwest::header::RETRY_AFTER);
            // Refused before reading when the length is announced, counted while reading when
            // it is not (chunked), so memory never holds more than the cap.
            if response.content_length().is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let mut body: Vec<u8> =
                Vec::with_capacity(response.content_length().unwrap_or(0) as usize);
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                body,
                key: key.map(str::to_string),
                location,
                retry_after,
            })
        }
        .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(answer) => tracing::debug!(
                method = %method,
                path = %shown,
                status = answer.status.as_u16(),
                elapsed_ms,
                attempt,
                "devlake request"
            ),
            Err(error) => tracing::debug!(
                method = %method,
                path = %shown,
                elapsed_ms,
                attempt,
                error = %error,
                "devlake request failed"
            ),
        }
        result
    }

    pub(super) fn decode<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        answer: &Answer,
    ) -> Result<T> {
        let body = &answer.body;
        serde_json::from_slice(body).map_err(|source| DevLakeError::Decode {
            method: method.to_string(),
            path: path.to_string(),
            excerpt: truncate_chars(
                &scrub(&String::from_utf8_lossy(body), answer.key.as_deref()),
                EXCERPT_CHARS,
            ),
            source,
        })
    }

    pub(super) fn encode_body<B: Serialize + ?Sized>(
        method: &Method,
        path: &str,
        body: &B,
    ) -> Result<Vec<u8>> {
        serde_json::to_vec(body).map_err(|source| DevLakeError::Decode {
            method: method.to_string(),
            path: path.to_string(),
            excerpt: "(request body could not be encoded)".to_string(),
            source,
        })
    }

    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        let answer = self
            .execute(Method::GET, path, query, None, Accept::Success)
            .await?;
        self.decode(&Method::GET, &path_with_query(path, query), &answer)
    }

    /// GET that answers `None` on DevLake's JSON 404.
    pub(super) async fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let answer = self
            .execute(Method::GET, path, &[], None, Accept::JsonNotFound)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.decode(&Method::GET, path, &answer).map(Some)
    }

    pub(super) async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let bytes = Self::encode_body(&method, path, body)?;
        let answer = self
            .execute(method.clone(), path, &[], Some(bytes), Accept::Success)
            .await?;
        self.decode(&method, path, &answer)
    }

    /// A lazy listing: fetches page `n+1` only after the consumer took every row of page `n`
    /// and asked for more, and only while `wants_next_page` says rows remain.
    pub(super) fn paged<'a, T, F, Fut>(
        &'a self,
        page_size: u32,
        fetch: F,
    ) -> BoxStream<'a, Result<T>>
    where
        T: Send + 'a,
        F: Fn(u32, u32) -> Fut + Send + 'a,
        Fut: Future<Output = Result<(i64, Vec<T>)>> + Send + 'a,
    {
        let page_size = page_size.max(1);
        try_stream! {
            let mut page = 1u32;
            let mut seen = 0u64;
            loop {
                let (count, rows) = fetch(page, page_size).await?;
                let n = rows.len();
                seen += n as u64;
                for row in rows {
                    yield row;
                }
                if !wants_next_page(n, page_size, seen, count) {
                    break;
                }
                page += 1;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::ClientConfig;
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The stream asks for a page only when the consumer wants rows beyond the previous one.
    #[tokio::test]
    pub(super) async fn streams_fetch_pages_lazily() {
        let client = DevLakeClient::new(ClientConfig {
            endpoint: "http://127.0.0.1:1".into(),
            ..Default::default()
        })
        .unwrap();
        let fetched = Arc::new(Mutex::new(Vec::new()));
        let total = 230i64;
        let stream = {
            let fetched = fetched.clone();
            client.paged(100, move |page, size| {
                let fetched = fetched.clone();
                async move {
                    fetched.lock().unwrap().push(page);
                    let start = (page as i64 - 1) * size as i64;
                    let rows: Vec<i64> = (start..(start + size as i64).min(total)).collect();
                    Ok((total, rows))
                }
            })
        };
        let first: Vec<i64> = stream.take(150).map(|r| r.unwrap()).collect().await;
        assert_eq!(first.len(), 150);
        assert_eq!(*fetched.lock().unwrap(), vec![1, 2]);

        fetched.lock().unwrap().clear();
        let stream = {
            let fetched = fetched.clone();
            client.paged(100, move |page, size| {
                let fetched = fetched.clone();
                async move {
                    fetched.lock().unwrap().push(page);
                    let start = (page as i64 - 1) * size as i64;
                    let rows: Vec<i64> = (start..(start + size as i64).min(total)).collect();
                    Ok((total, rows))
                }
            })
        };
        let all: Vec<i64> = stream.map(|r| r.unwrap()).collect().await;
        assert_eq!(all, (0..230).collect::<Vec<_>>());
        assert_eq!(*fetched.lock().unwrap(), vec![1, 2, 3]);
    }
}
