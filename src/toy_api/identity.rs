//! Toy identity from the TLS client certificate. `on_connect` copies the
//! peer certificate of each connection into the request's connection data
//! ([`PeerCertificate`]); the [`Toy`] extractor turns it into a paired toy:
//! none is `401`; one this hub did not issue never gets here (the TLS
//! verifier refuses it); one that is not the current certificate of a
//! paired toy (removed, or replaced by pairing again) is `403`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use crate::error::{Code, Error};
use crate::state::AppState;
use crate::store::toys::Toy as ToyRow;

/// The client certificate (DER) the connection presented, if any.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Vec<u8>);

/// Copies the client certificate into the connection's extensions; given
/// to `HttpServer::on_connect`.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() {
        let (_, session) = tls.get_ref();
        if let Some(cert) = session.peer_certificates().and_then(|c| c.first()) {
            ext.insert(PeerCertificate(cert.as_ref().to_vec()));
        }
    }
}

/// A paired toy, authenticated by its current client certificate.
#[derive(Debug, Clone)]
pub struct Toy {
    /// Its row.
    pub row: ToyRow,
}

async fn identify(req: HttpRequest) -> Result<Toy, Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Error::internal(anyhow::anyhow!("app state missing")))?;
    let cert = req.conn_data::<PeerCertificate>().cloned().ok_or_else(|| {
        Error::unauthorized("this endpoint needs the client certificate the hub issued at pairing")
    })?;
    let row = crate::toys::by_certificate(&state, &cert.0).await?;
    let Some(row) = row else {
        return Err(Error::new(
            Code::ToyNotPaired,
            "this certificate is no longer valid: the toy was removed or paired again; pair it again",
        ));
    };
    crate::toys::called(&state, &row).await?;
    Ok(Toy { row })
}

impl FromRequest for Toy {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(identify(req.clone()))
    }
}
