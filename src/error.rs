//! The one error type of the hub's use cases and surfaces: a [`Code`] from
//! one list (which also chooses the HTTP status), a message, a cause, the
//! log-once rule and the JSON body. The HTML page for the same error is
//! drawn by the pages' surface; this module renders no HTML.
//!
//! A server-side failure (5xx) gets a request id: the full error chain is
//! logged once with that id and the person sees only the id, never the
//! internals.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::domain::Invalid;
use crate::store::StoreError;

/// Every error code the hub answers with: the stable snake_case wire name
/// of `{"error": {"code"}}` and, in one `match`, its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The body could not be read.
    BadBody,
    /// The JSON body does not parse or has unknown fields.
    InvalidJson,
    /// A value that a domain type refused.
    InvalidInput,
    /// The query string does not parse.
    InvalidQuery,
    /// The form does not parse.
    InvalidForm,
    /// `format` is neither `ogg` nor `wav`.
    InvalidFormat,
    /// A malformed `Idempotency-Key`.
    InvalidIdempotencyKey,
    /// A bad `limit`.
    InvalidLimit,
    /// A bad `before`.
    InvalidBefore,
    /// A battery outside 0 to 100.
    InvalidBattery,
    /// A firmware text too long or not printable.
    InvalidFirmware,
    /// A pairing request that breaks the protocol.
    InvalidPairingRequest,
    /// A session id that is not a number.
    InvalidSessionId,
    /// A bad long-poll `wait`.
    InvalidWait,
    /// A ledger `action` filter outside the vocabulary.
    InvalidAction,
    /// An invitation code that is unknown, used, revoked or expired.
    InvalidInvite,
    /// A role that is not admin, parent or relative (or not allowed here).
    InvalidRole,
    /// A list of toys naming a toy that is not paired, or toys for a non-relative.
    InvalidToys,
    /// The last admin cannot be demoted or removed.
    LastAdmin,
    /// The username is taken.
    UsernameTaken,
    /// The account holds as many open event streams as it may.
    TooManyStreams,
    /// No or bad credentials.
    Unauthorized,
    /// The caller's role is too low.
    Forbidden,
    /// A state change without the page's CSRF token or from another origin.
    CsrfCheckFailed,
    /// A client outside the home network.
    OutsideHomeNetwork,
    /// A certificate of a toy that is no longer paired.
    ToyNotPaired,
    /// The current password is wrong.
    WrongPassword,
    /// The setup code is wrong.
    WrongSetupCode,
    /// The setup code was right but has expired; a new one was logged.
    SetupCodeExpired,
    /// Nothing there.
    NotFound,
    /// A toy with this id is paired.
    AlreadyPaired,
    /// The toy's nonce was revealed already.
    AlreadyRevealed,
    /// The first admin exists.
    AlreadySetUp,
    /// The pairing is not waiting for this step.
    PairingNotReady,
    /// A pending pairing for this toy id has another key.
    PairingInProgress,
    /// The body is too large.
    PayloadTooLarge,
    /// The body did not arrive within its deadline.
    BodyTimeout,
    /// An API was called over plain HTTP.
    HttpsRequired,
    /// The content type is not accepted.
    UnsupportedMediaType,
    /// The toy's nonce does not match its commitment.
    CommitmentMismatch,
    /// The audio does not decode or breaks a rule.
    InvalidAudio,
    /// A pairing code that is not six digits.
    InvalidCode,
    /// A bad household name.
    InvalidHousehold,
    /// A bad toy or household name.
    InvalidName,
    /// A retention period out of range.
    InvalidRetention,
    /// A toy picture outside the built-in set.
    InvalidPicture,
    /// Quiet hours with a bad or missing time.
    InvalidQuietHours,
    /// A bad username.
    InvalidUsername,
    /// Asked for something not available yet.
    NotSupported,
    /// A password the rule refuses.
    WeakPassword,
    /// The pairing code the parent typed is wrong.
    WrongCode,
    /// The passphrase does not open the backup.
    WrongPassphrase,
    /// The file is not a Hearth backup, or it is damaged.
    InvalidBackup,
    /// The backup was made by a newer Hearth than this hub runs.
    BackupTooNew,
    /// A typed confirmation (the household's name) does not match.
    ConfirmationMismatch,
    /// Throttled; `Retry-After` says how long.
    TooManyRequests,
    /// Too much slow work (password checks) is waiting; try again shortly.
    Busy,
    /// Something failed inside the hub.
    InternalError,
    /// The disk is full.
    StorageFull,
    /// Relay settings that cannot work (RELAY.md section 1).
    InvalidRelaySettings,
    /// A share request out of range.
    InvalidShare,
    /// Sharing needs a configured relay mailbox.
    RelayNotConfigured,
    /// The relay mailbox could not be used; the message says why.
    RelayUnreachable,
    /// Shares still use the mailbox.
    SharesLive,
}

impl Code {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadBody => "bad_body",
            Self::InvalidJson => "invalid_json",
            Self::InvalidInput => "invalid_input",
            Self::InvalidQuery => "invalid_query",
            Self::InvalidForm => "invalid_form",
            Self::InvalidFormat => "invalid_format",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::InvalidLimit => "invalid_limit",
            Self::InvalidBefore => "invalid_before",
            Self::InvalidBattery => "invalid_battery",
            Self::InvalidFirmware => "invalid_firmware",
            Self::InvalidPairingRequest => "invalid_pairing_request",
            Self::InvalidSessionId => "invalid_session_id",
            Self::InvalidWait => "invalid_wait",
            Self::InvalidAction => "invalid_action",
            Self::InvalidInvite => "invalid_invite",
            Self::InvalidRole => "invalid_role",
            Self::InvalidToys => "invalid_toys",
            Self::LastAdmin => "last_admin",
            Self::UsernameTaken => "username_taken",
            Self::TooManyStreams => "too_many_streams",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::CsrfCheckFailed => "csrf_check_failed",
            Self::OutsideHomeNetwork => "outside_home_network",
            Self::ToyNotPaired => "toy_not_paired",
            Self::WrongPassword => "wrong_password",
            Self::WrongSetupCode => "wrong_setup_code",
            Self::SetupCodeExpired => "setup_code_expired",
            Self::NotFound => "not_found",
            Self::AlreadyPaired => "already_paired",
            Self::AlreadyRevealed => "already_revealed",
            Self::AlreadySetUp => "already_set_up",
            Self::PairingNotReady => "pairing_not_ready",
            Self::PairingInProgress => "pairing_in_progress",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::HttpsRequired => "https_required",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::CommitmentMismatch => "commitment_mismatch",
            Self::InvalidAudio => "invalid_audio",
            Self::InvalidCode => "invalid_code",
            Self::InvalidHousehold => "invalid_household",
            Self::InvalidName => "invalid_name",
            Self::InvalidRetention => "invalid_retention",
            Self::InvalidPicture => "invalid_picture",
            Self::InvalidQuietHours => "invalid_quiet_hours",
            Self::InvalidUsername => "invalid_username",
            Self::NotSupported => "not_supported",
            Self::WeakPassword => "weak_password",
            Self::WrongCode => "wrong_code",
            Self::WrongPassphrase => "wrong_passphrase",
            Self::InvalidBackup => "invalid_backup",
            Self::BackupTooNew => "backup_too_new",
            Self::ConfirmationMismatch => "confirmation_mismatch",
            Self::TooManyRequests => "too_many_requests",
            Self::Busy => "busy",
            Self::InternalError => "internal_error",
            Self::StorageFull => "storage_full",
            Self::InvalidRelaySettings => "invalid_relay_settings",
            Self::InvalidShare => "invalid_share",
            Self::RelayNotConfigured => "relay_not_configured",
            Self::RelayUnreachable => "relay_unreachable",
            Self::SharesLive => "shares_live",
        }
    }

    /// The HTTP status of every answer with this code: the one place it is chosen.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadBody
            | Self::InvalidJson
            | Self::InvalidInput
            | Self::InvalidQuery
            | Self::InvalidForm
            | Self::InvalidFormat
            | Self::InvalidIdempotencyKey
            | Self::InvalidLimit
            | Self::InvalidBefore
            | Self::InvalidBattery
            | Self::InvalidFirmware
            | Self::InvalidPairingRequest
            | Self::InvalidSessionId
            | Self::InvalidWait
            | Self::InvalidAction => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden
            | Self::CsrfCheckFailed
            | Self::OutsideHomeNetwork
            | Self::ToyNotPaired
            | Self::WrongPassword
            | Self::WrongSetupCode
            | Self::SetupCodeExpired
            | Self::InvalidInvite => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyPaired
            | Self::AlreadyRevealed
            | Self::AlreadySetUp
            | Self::PairingNotReady
            | Self::PairingInProgress
            | Self::LastAdmin
            | Self::UsernameTaken
            | Self::RelayNotConfigured
            | Self::SharesLive => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::HttpsRequired => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::CommitmentMismatch
            | Self::InvalidAudio
            | Self::InvalidCode
            | Self::InvalidHousehold
            | Self::InvalidName
            | Self::InvalidRetention
            | Self::InvalidPicture
            | Self::InvalidQuietHours
            | Self::InvalidUsername
            | Self::NotSupported
            | Self::WeakPassword
            | Self::WrongCode
            | Self::WrongPassphrase
            | Self::InvalidBackup
            | Self::BackupTooNew
            | Self::ConfirmationMismatch
            | Self::InvalidRelaySettings
            | Self::InvalidShare => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidRole | Self::InvalidToys => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests | Self::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::RelayUnreachable => StatusCode::BAD_GATEWAY,
        }
    }

    /// An error with this code whose message is what a domain type said.
    pub fn invalid(self, e: Invalid) -> Error {
        Error::new(self, e.0)
    }
}

/// An error answered to a client.
#[derive(Debug)]
pub struct Error {
    /// What went wrong, for programs; it decides the HTTP status.
    pub code: Code,
    /// A sentence a person can act on.
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
    /// Extra top-level fields of the JSON body (e.g. `attempts_left`).
    pub extra: Option<(&'static str, serde_json::Value)>,
    /// The cause of a 5xx, logged once and never shown.
    pub source: Option<anyhow::Error>,
}

/// Shorthand for results of request handlers and use cases.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with the given code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            extra: None,
            source: None,
        }
    }

    /// The HTTP status (from the code).
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// `401`: no or bad credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthorized, message)
    }

    /// `404`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    /// `413`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(Code::PayloadTooLarge, message)
    }

    /// `415`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(Code::UnsupportedMediaType, message)
    }

    /// `429` with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(Code::TooManyRequests, message);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// `507`.
    pub fn storage_full() -> Self {
        Self::new(
            Code::StorageFull,
            "the hub's storage is full; a parent must delete old messages or free disk space",
        )
    }

    /// `500` with a cause that is logged, not shown.
    pub fn internal(source: anyhow::Error) -> Self {
        let mut e = Self::new(Code::InternalError, "something went wrong on the hub");
        e.source = Some(source);
        e
    }

    /// Adds a top-level field to the JSON body.
    pub fn with_extra(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.extra = Some((key, value));
        self
    }

    /// For a 5xx: logs the full chain once and returns the request id to show.
    fn log_once(&self) -> Option<String> {
        if !self.status().is_server_error() {
            return None;
        }
        let id = hex::encode(rand::random::<[u8; 6]>());
        match &self.source {
            Some(src) => {
                tracing::error!(request_id = %id, error = %format!("{src:#}"), "request failed")
            }
            None => tracing::error!(request_id = %id, message = %self.message, "request failed"),
        }
        Some(id)
    }

    /// The message a person may see. For a 5xx this logs the full chain
    /// once and adds the request id; call it once per answer.
    pub fn shown_message(&self) -> String {
        match self.log_once() {
            Some(id) => format!("{} (request id {id})", self.message),
            None => self.message.clone(),
        }
    }

    /// A response with the status, `Retry-After` and `Cache-Control: no-store`;
    /// the surface adds the body.
    pub fn response_builder(&self) -> actix_web::HttpResponseBuilder {
        let mut b = HttpResponse::build(self.status());
        if let Some(secs) = self.retry_after {
            b.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        b.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        b
    }

    /// The JSON form: `{"error": {"code", "message"}}` plus any extra field.
    pub fn to_json_response(&self) -> HttpResponse {
        let mut body =
            json!({"error": {"code": self.code.as_str(), "message": self.shown_message()}});
        if let (Some((k, v)), Some(obj)) = (&self.extra, body.as_object_mut()) {
            obj.insert((*k).to_owned(), v.clone());
        }
        self.response_builder().json(body)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status().as_u16(),
            self.code.as_str(),
            self.message
        )
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.to_json_response()
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full => Self::storage_full(),
            other => Self::internal(anyhow::Error::new(other)),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Self {
        Code::InvalidInput.invalid(e)
    }
}
