//! Pairing endpoints of the toy protocol (`docs/toy-protocol.md` section 3, steps 1,
//! 2 and 4). No client certificate is needed; every rule and edge case of
//! the section is answered here, and every outcome is audited.

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::domain::{DisplayName, Hex32, ToyId};
use crate::error::{Code, Error, Result};
use crate::events::{PageEvent, ToyChange};
use crate::http::{Access, Json, Routes};
use crate::pairing::{self, PairError, Request, Status};
use crate::state::AppState;
use crate::store::{self, audit::Action, audit::AuditEntry, audit::Outcome};

/// Largest pairing request.
pub const PAIR_LIMIT: usize = 16 * 1024;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::POST, "/toy/v1/pair", Access::Public, start);
    r.add(
        Method::POST,
        "/toy/v1/pair/{pairing_id}/reveal",
        Access::Public,
        reveal,
    );
    r.add(
        Method::GET,
        "/toy/v1/pair/{pairing_id}",
        Access::Public,
        poll,
    );
}

#[derive(Deserialize)]
struct PairBody {
    toy_id: String,
    name: String,
    #[serde(default)]
    model: String,
    csr: String,
    commitment: String,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(Code::InvalidPairingRequest, msg)
}

async fn audit(
    state: &AppState,
    action: Action,
    toy: Option<String>,
    outcome: Outcome,
    detail: String,
) -> Result<()> {
    let entry = AuditEntry {
        at: state.now(),
        actor: toy.as_ref().map(|t| format!("toy:{t}")),
        action,
        subject: toy,
        outcome,
        detail,
    };
    state
        .store
        .write(move |tx| store::audit::record(tx, &entry))
        .await?;
    Ok(())
}

async fn start(
    state: web::Data<AppState>,
    Json(b): Json<PairBody, PAIR_LIMIT>,
) -> Result<HttpResponse> {
    let toy_id = ToyId::parse(&b.toy_id).map_err(|e| bad(e.0))?;
    let name = DisplayName::parse(&b.name).map_err(|e| bad(format!("name: {e}")))?;
    if b.model.len() > 64 || b.model.chars().any(char::is_control) {
        return Err(bad("model is at most 64 bytes of printable text"));
    }
    let commitment = Hex32::parse("commitment", &b.commitment).map_err(|e| bad(e.0))?;
    let csr = crate::pki::check_csr(&b.csr).map_err(|e| bad(e.0))?;
    let id = toy_id.clone();
    let paired = state
        .store
        .read(move |c| store::toys::by_toy_id(c, &id))
        .await?
        .is_some_and(|t| t.removed_at.is_none());
    if paired {
        return Err(Error::new(
            Code::AlreadyPaired,
            "a toy with this id is already paired; a parent must remove it on the Toys page first",
        ));
    }
    let now = state.now();
    let request = Request {
        toy_id: toy_id.clone(),
        name,
        model: b.model,
        csr,
        commitment,
    };
    let (pairing_id, hub_nonce, replaced) = match state.pairings.start(request, now) {
        Ok(x) => x,
        Err(PairError::TooMany) => {
            audit(
                &state,
                Action::PairingRequest,
                Some(toy_id.to_string()),
                Outcome::Failure,
                "too many pairings pending".into(),
            )
            .await?;
            return Err(Error::too_many(
                "too many pairings are waiting; try again in a few minutes",
                60,
            ));
        }
        Err(_) => return Err(Error::internal(anyhow::anyhow!("unexpected pairing state"))),
    };
    let detail = match &replaced {
        Some(_) => "pairing requested (replacing an earlier request)".to_owned(),
        None => "pairing requested".to_owned(),
    };
    audit(
        &state,
        Action::PairingRequest,
        Some(toy_id.to_string()),
        Outcome::Success,
        detail,
    )
    .await?;
    state.events.publish(PageEvent::pairing(
        ToyChange::Pairing,
        &pairing_id,
        Some(toy_id.to_string()),
    ));
    Ok(HttpResponse::Created().json(json!({
        "pairing_id": pairing_id,
        "hub_nonce": hex::encode(hub_nonce),
        "ca_cert": state.pki.ca_pem(),
        "expires_in": pairing::EXPIRES_IN,
    })))
}

#[derive(Deserialize)]
struct RevealBody {
    toy_nonce: String,
}

async fn reveal(
    state: web::Data<AppState>,
    path: web::Path<String>,
    Json(b): Json<RevealBody, PAIR_LIMIT>,
) -> Result<HttpResponse> {
    let nonce = Hex32::parse("toy_nonce", &b.toy_nonce).map_err(|e| bad(e.0))?;
    let now = state.now();
    let id = path.into_inner();
    let toy = state
        .pairings
        .get(&id, now)
        .map(|p| p.request.toy_id.to_string());
    match state.pairings.reveal(&id, nonce.0, now) {
        Ok(()) => {
            state
                .events
                .publish(PageEvent::pairing(ToyChange::Pairing, &id, None));
            Ok(HttpResponse::Ok().json(json!({"status": "awaiting_confirmation"})))
        }
        Err(PairError::NotFound) => Err(Error::not_found(
            "no such pairing: it expired or was replaced; start again",
        )),
        Err(PairError::WrongState(m)) => Err(Error::new(Code::AlreadyRevealed, m)),
        Err(PairError::CommitmentMismatch) => {
            audit(
                &state,
                Action::PairingReveal,
                toy,
                Outcome::Failure,
                "nonce did not match the commitment; pairing discarded".into(),
            )
            .await?;
            state
                .events
                .publish(PageEvent::pairing(ToyChange::Pairing, &id, None));
            Err(Error::new(
                Code::CommitmentMismatch,
                "SHA-256 of toy_nonce does not equal the commitment; the pairing is discarded, start again",
            ))
        }
        Err(_) => Err(Error::internal(anyhow::anyhow!("unexpected pairing state"))),
    }
}

async fn poll(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse> {
    let p = state.pairings.get(&path, state.now()).ok_or_else(|| {
        Error::not_found("no such pairing: it expired or was replaced; start again")
    })?;
    let body = match p.status {
        Status::AwaitingReveal => json!({"status": "awaiting_reveal"}),
        Status::AwaitingConfirmation | Status::Approving => {
            json!({"status": "awaiting_confirmation"})
        }
        Status::Approved { client_cert_pem } => json!({
            "status": "approved",
            "toy_id": p.request.toy_id,
            "client_cert": client_cert_pem,
            "ca_cert": state.pki.ca_pem(),
        }),
        Status::Rejected => json!({"status": "rejected"}),
    };
    Ok(HttpResponse::Ok().json(body))
}
