//! An emulator served on a loopback port, and the HTTP the tests send it.

use http::{HeaderMap, StatusCode};

pub struct Loopback {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub http: reqwest::Client,
}

/// Serves the router `make` builds for the base URL on a free loopback port.
pub async fn serve(make: impl FnOnce(String) -> axum::Router) -> Loopback {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = make(base.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Loopback {
        base,
        http: reqwest::Client::new(),
    }
}

impl Loopback {
    /// Sends a request built by a provider module; the answer's status, headers, body.
    pub async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let answer = self
            .http
            .execute(reqwest::Request::try_from(request).unwrap())
            .await
            .unwrap();
        let (status, headers) = (answer.status(), answer.headers().clone());
        (status, headers, answer.bytes().await.unwrap().to_vec())
    }

    /// Posts to one of the emulator's control routes, which answer 204.
    pub async fn control(&self, path: &str) {
        let status = self
            .http
            .post(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204, "{path}");
    }
}
