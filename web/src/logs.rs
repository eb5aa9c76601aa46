//! Every log line written while a request is handled names the request's id, in both log
//! formats: first in a JSON line's object, last among a text line's fields.
//!
//! The id is a task-local of the request's future, not a tracing span. A span costs every
//! request a slot in the registry, its fields formatted into a string and a thread-local stack
//! push and pop on every poll (about 5 % of a cached read's throughput), while the id is needed
//! only by the few requests that log anything.

use std::fmt;
use std::future::Future;

use axum::http::HeaderValue;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// Runs a request's work with `id` as the id its log lines carry.
pub(crate) fn scope<F: Future>(id: HeaderValue, work: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id, work)
}

/// The id of the request being handled on this task, if any.
fn current_request_id() -> Option<HeaderValue> {
    REQUEST_ID.try_with(HeaderValue::clone).ok()
}

/// JSON lines: wraps the JSON event format and puts `"request_id"` first in the object.
#[derive(Debug, Clone, Default)]
pub struct JsonWithRequestId<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for JsonWithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(id) = current_request_id() else {
            return self.0.format_event(context, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.0.format_event(context, Writer::new(&mut line), event)?;
        let id = serde_json::to_string(id.to_str().unwrap_or_default()).map_err(|_| fmt::Error)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"request_id\":{id},{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// Text lines: wraps a field format and adds `request_id=…` after the event's own fields.
#[derive(Debug, Clone, Default)]
pub struct TextWithRequestId<N>(pub N);

impl<'w, N: for<'a> FormatFields<'a>> FormatFields<'w> for TextWithRequestId<N> {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        self.0.format_fields(writer.by_ref(), fields)?;
        match current_request_id() {
            Some(id) => write!(writer, " request_id={}", id.to_str().unwrap_or_default()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::format::{DefaultFields, Format, JsonFields};
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Logs one line inside a request's scope and one outside it.
    async fn log_in_and_out(subscriber: impl Subscriber + Send + Sync + 'static) {
        let _default = tracing::subscriber::set_default(subscriber);
        scope(HeaderValue::from_static("req-\"7\""), async { tracing::info!(answer = 42, "inside") }).await;
        tracing::info!("outside");
    }

    #[tokio::test]
    async fn json_lines_inside_a_request_carry_its_id_first_and_others_carry_none() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithRequestId(Format::default().json()))
            .with_writer(lines.clone())
            .finish();
        log_in_and_out(subscriber).await;
        let text = lines.text();
        let parsed: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert_eq!(parsed[0]["request_id"], "req-\"7\"", "{text}");
        assert_eq!(parsed[0]["fields"]["answer"], 42, "{text}");
        assert_eq!(parsed[0]["fields"]["message"], "inside", "{text}");
        assert!(parsed[1].get("request_id").is_none(), "{text}");
    }

    #[tokio::test]
    async fn text_lines_inside_a_request_end_their_fields_with_its_id() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(TextWithRequestId(DefaultFields::new()))
            .with_ansi(false)
            .with_writer(lines.clone())
            .finish();
        log_in_and_out(subscriber).await;
        let text = lines.text();
        let mut rows = text.lines();
        assert!(rows.next().unwrap().ends_with("inside answer=42 request_id=req-\"7\""), "{text}");
        assert!(rows.next().unwrap().ends_with("outside"), "{text}");
    }
}
