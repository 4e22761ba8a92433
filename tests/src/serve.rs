//! Running an axum router in the background for the local doubles, until its handle is dropped.

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A router being served; dropping it shuts the server down (in-flight requests finish first).
pub struct Serving {
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves `app` on `listener` on a spawned task (needs a Tokio runtime).
pub fn serve_in_background(listener: TcpListener, app: Router) -> Serving {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Serving { shutdown: Some(tx) }
}
