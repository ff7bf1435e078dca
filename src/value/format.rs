//! Small formatting helpers for texts people read: durations and URLs without secrets.

/// A duration for people: `850ms`, `2.4s`, `3m05s`.
pub fn short_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// A URL for people: no credentials, no query (it may hold a key), no fragment.
pub fn shown_url(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    let query = url.query().is_some_and(|q| !q.is_empty());
    url.set_query(None);
    if query {
        format!("{url}?…")
    } else {
        url.to_string()
    }
}
