//! The page of a published snapshot, kept by the metrics function between scrapes.
//!
//! The page is the three sections of [`render::render_page_timed`]. The compatibility series and
//! the project section are rendered from the published state once (per format) and kept both as
//! text and as raw deflate data ending on a byte boundary (a sync flush); a scrape writes only
//! the live section, compresses that alone, and joins the pieces into one gzip member: the pieces'
//! deflate data one after the other is one valid deflate stream, and the member's CRC-32 is
//! combined from the pieces' own. Serving costs a copy of the compressed page, not a render and a
//! compression of it.
//!
//! The compatibility series depends on the scrape's time: a failure leaves it when it falls out
//! of the window. Its samples are kept in parts of about [`FAILURES_PER_PART`] failures (whole
//! projects, in page order); a part is rendered again, alone, only when the failures it leaves
//! out change. Between two scrapes a few seconds apart that is rarely more than one part.
//!
//! The bytes are those of [`render::render_page_timed`] for the same input, whatever the time of
//! each scrape (checked by the tests against it).

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use crate::render::{self, ExpositionFormat};
use crate::store::{FailureEvent, LiveRecords, MetricsSnapshot, PublishedState};

/// Failures per part of the compatibility series: about 55 KB of text, re-rendered and compressed
/// in well under a millisecond when one of its failures leaves the window.
pub const FAILURES_PER_PART: usize = 512;

/// The gzip member header: deflate, no name or comment, no modification time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// Text and its raw deflate data (sync-flushed: whole bytes, more data may follow).
struct Piece {
    text: String,
    /// `None` if compressing failed (it does not in practice): the scrape answers uncompressed.
    deflated: Option<(Vec<u8>, Crc)>,
}

impl Piece {
    fn new(text: String) -> Piece {
        let deflated = deflate(text.as_bytes(), false).ok().map(|data| {
            let mut crc = Crc::new();
            crc.update(text.as_bytes());
            (data, crc)
        });
        Piece { text, deflated }
    }
}

/// Some whole projects' failures and their samples as last rendered.
struct CompatPart {
    /// Oldest first.
    failures: Vec<FailureEvent>,
    /// `(skipped, samples of failures[skipped..])`.
    rendered: Option<(usize, Piece)>,
}

/// The rendered page of one published version; see the module documentation.
pub struct PreparedPage {
    version: u64,
    timezone: Tz,
    /// The published projects (failures, runs and decode errors empty): the project section's
    /// input.
    projects: MetricsSnapshot,
    /// Per format (see [`slot`]), rendered on first use.
    project_sections: [Option<Piece>; 2],
    compat_headers: [Option<Piece>; 2],
    parts: Vec<CompatPart>,
    /// Recent-failure entries that do not parse, sorted: the direct read counts those at or
    /// after the window's start as decode errors, and so does this.
    malformed: Vec<String>,
    /// Project items the publisher skipped.
    published_decode_errors: u64,
}

/// One scrape's answer.
#[derive(Debug)]
pub struct ServedPage {
    /// The page, gzip-compressed when `gzip`.
    pub body: Vec<u8>,
    pub gzip: bool,
    /// Bytes of the page uncompressed.
    pub page_bytes: usize,
    pub projects: usize,
    /// Failures on the page (in the window).
    pub failures: usize,
    pub decode_errors: u64,
}

fn slot(format: ExpositionFormat) -> usize {
    match format {
        ExpositionFormat::PrometheusText => 0,
        ExpositionFormat::OpenMetrics => 1,
    }
}

impl PreparedPage {
    /// Parses the projects' recent-failure lists and splits the failures into parts; nothing is
    /// rendered until a scrape asks for it.
    pub fn new(version: u64, state: PublishedState, timezone: Tz) -> PreparedPage {
        let mut by_project: BTreeMap<String, Vec<FailureEvent>> = BTreeMap::new();
        let mut malformed = Vec::new();
        for project in &state.projects {
            for entry in project.parse_recent_failures() {
                match entry {
                    Ok(failure) => by_project
                        .entry(project.project_name.clone())
                        .or_default()
                        .push(failure),
                    Err(key) => {
                        tracing::warn!(project = %project.project_name, key, "skipping a recent failure that does not decode");
                        malformed.push(key.to_string());
                    }
                }
            }
        }
        malformed.sort();
        let mut parts = Vec::new();
        let mut current: Vec<FailureEvent> = Vec::new();
        for (_, failures) in by_project {
            current.extend(failures);
            if current.len() >= FAILURES_PER_PART {
                parts.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            parts.push(current);
        }
        let parts = parts
            .into_iter()
            .map(|mut failures| {
                failures.sort_by_key(|f| f.finished_at);
                CompatPart {
                    failures,
                    rendered: None,
                }
            })
            .collect();
        PreparedPage {
            version,
            timezone,
            projects: MetricsSnapshot {
                projects: state.projects,
                ..MetricsSnapshot::default()
            },
            project_sections: [None, None],
            compat_headers: [None, None],
            parts,
            malformed,
            published_decode_errors: state.decode_errors,
        }
    }

    /// The published version this page renders.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The page for a scrape whose window starts at `since`: byte for byte what
    /// [`render::render_page_timed`] writes for the published state, the failures of the window
    /// and the `live` records. `render_duration` is asked once everything but the self-timing line is
    /// rendered (before compression, as for a page rendered whole).
    pub fn serve(
        &mut self,
        since: DateTime<Utc>,
        format: ExpositionFormat,
        gzip: bool,
        live: LiveRecords,
        render_duration: impl FnOnce() -> Duration,
    ) -> ServedPage {
        let slot = slot(format);
        let mut failures = 0;
        for part in &mut self.parts {
            let skipped = part.failures.partition_point(|f| f.finished_at < since);
            failures += part.failures.len() - skipped;
            if part.rendered.as_ref().map(|(s, _)| *s) != Some(skipped) {
                let samples =
                    render::failure_compat_samples(&part.failures[skipped..], self.timezone);
                part.rendered = Some((skipped, Piece::new(samples)));
            }
        }
        if failures > 0 && self.compat_headers[slot].is_none() {
            self.compat_headers[slot] = Some(Piece::new(render::failure_compat_header(format)));
        }
        if self.project_sections[slot].is_none() {
            self.project_sections[slot] =
                Some(Piece::new(render::project_section(&self.projects, format)));
        }
        let from = since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let malformed = self.malformed.len()
            - self
                .malformed
                .partition_point(|k| k.as_str() < from.as_str());
        let decode_errors = self.published_decode_errors + live.decode_errors + malformed as u64;
        let live_input = MetricsSnapshot {
            automation: live.automation,
            monitor: live.monitor,
            events: live.events,
            connections: live.connections,
            decode_errors,
            ..MetricsSnapshot::default()
        };
        let tail = render::live_section(&live_input, format, render_duration);

        let header = self.compat_headers[slot].as_ref().filter(|_| failures > 0);
        let pieces: Vec<&Piece> = header
            .into_iter()
            .chain(
                self.parts
                    .iter()
                    .filter_map(|p| p.rendered.as_ref().map(|(_, piece)| piece)),
            )
            .chain(self.project_sections[slot].as_ref())
            .collect();
        let page_bytes = pieces.iter().map(|p| p.text.len()).sum::<usize>() + tail.len();
        let compressed = if gzip {
            gzip_member(&pieces, &tail).ok()
        } else {
            None
        };
        let (body, gzip) = match compressed {
            Some(body) => (body, true),
            None => {
                let mut body = Vec::with_capacity(page_bytes);
                for piece in &pieces {
                    body.extend_from_slice(piece.text.as_bytes());
                }
                body.extend_from_slice(tail.as_bytes());
                (body, false)
            }
        };
        ServedPage {
            body,
            gzip,
            page_bytes,
            projects: self.projects.projects.len(),
            failures,
            decode_errors,
        }
    }
}

/// One gzip member of `pieces` then `tail` (compressed now, ending the stream).
fn gzip_member(pieces: &[&Piece], tail: &str) -> io::Result<Vec<u8>> {
    let last = deflate(tail.as_bytes(), true)?;
    let size: usize = pieces
        .iter()
        .map(|p| p.deflated.as_ref().map_or(0, |(d, _)| d.len()))
        .sum();
    let mut out = Vec::with_capacity(GZIP_HEADER.len() + size + last.len() + 8);
    out.extend_from_slice(&GZIP_HEADER);
    let mut crc = Crc::new();
    for piece in pieces {
        let (data, piece_crc) = piece
            .deflated
            .as_ref()
            .ok_or_else(|| io::Error::other("a piece of the page did not compress"))?;
        out.extend_from_slice(data);
        crc.combine(piece_crc);
    }
    out.extend_from_slice(&last);
    crc.update(tail.as_bytes());
    out.extend_from_slice(&crc.sum().to_le_bytes());
    // ISIZE: the uncompressed size modulo 2^32, as the CRC counts it.
    out.extend_from_slice(&crc.amount().to_le_bytes());
    Ok(out)
}

/// Raw deflate data of `data` at the fast level (the page is repetitive: it still shrinks about
/// tenfold). `finish`: the stream's final block; otherwise a sync flush, so the data ends on a
/// byte boundary and more deflate data may follow it.
fn deflate(data: &[u8], finish: bool) -> io::Result<Vec<u8>> {
    let mut compress = Compress::new(Compression::fast(), false);
    let flush = if finish {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 8 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(1024));
        }
        let (read, written) = (compress.total_in(), compress.total_out());
        let status = compress
            .compress_vec(&data[read as usize..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_read = compress.total_in() as usize == data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once everything was read and output room is left over.
            _ if !finish && all_read && room_left => return Ok(out),
            _ if (compress.total_in(), compress.total_out()) == (read, written) && room_left => {
                return Err(io::Error::other("deflate made no progress"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sync_flushed_pieces_join_into_one_gzip_member() {
        let a = Piece::new("first piece\n".repeat(1000));
        let b = Piece::new(String::new());
        let c = Piece::new("x".repeat(70_000));
        let body = gzip_member(&[&a, &b, &c], "tail\n").unwrap();
        // A single-member decoder reads it all, CRC and size checked.
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, format!("{}{}{}tail\n", a.text, b.text, c.text));
        assert!(body.len() < text.len() / 10);
    }
}
