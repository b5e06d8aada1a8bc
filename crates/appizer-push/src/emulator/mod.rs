//! Local push services that behave as the real ones do, for tests and for developing
//! apps without Apple or Google accounts: they check what the real services check,
//! answer with their statuses, can be told to fail, and list what they received.
//!
//! In place: Web Push (`webpush`) and FCM with its token endpoint (`fcm`).

pub mod fcm;
pub mod webpush;

/// Serves every emulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let base = format!("http://{}", listener.local_addr()?);
    let router = webpush::WebPushEmulator::new(base.clone())
        .router()
        .merge(fcm::FcmEmulator::new(base).router());
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
