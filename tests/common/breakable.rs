//! A shop whose channels (`/svc/NAME`) answer 200 or 500 as the test says: what alerting tests
//! break and repair.

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Which channels of the shop are broken, by name.
pub type Broken = Arc<Mutex<BTreeMap<String, bool>>>;

/// A shop whose channels answer 200 or 500 as the test says.
pub struct Shop {
    pub addr: SocketAddr,
    broken: Broken,
}

impl Shop {
    pub async fn start() -> Self {
        async fn answer(
            State(broken): State<Broken>,
            UrlPath(channel): UrlPath<String>,
        ) -> StatusCode {
            let broken = broken
                .lock()
                .expect("lock")
                .get(&channel)
                .copied()
                .unwrap_or(false);
            if broken {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }
        let broken = Broken::default();
        let app = Router::new()
            .route("/svc/{channel}", get(answer))
            .with_state(broken.clone());
        Shop {
            addr: super::serve(app).await,
            broken,
        }
    }

    pub fn set(&self, channel: &str, broken: bool) {
        self.broken
            .lock()
            .expect("lock")
            .insert(channel.to_string(), broken);
    }

    /// `checks:` with an http check of each of `channels`, run every second.
    pub fn checks(&self, channels: &[&str]) -> String {
        let shop = self.addr;
        let mut out = String::from("checks:\n");
        for c in channels {
            out.push_str(&format!(
                "  - {{ name: {c}, kind: http, channel: {c}, url: \"http://{shop}/svc/{c}\", interval: 1s, timeout: 1s, retries: 0 }}\n"
            ));
        }
        out
    }
}
