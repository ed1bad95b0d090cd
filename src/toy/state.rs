//! The toy's state directory: its key (`toy.key`, made once and kept) and
//! everything else in `toy.json` (id, name, pinned CA, client certificate,
//! the hub's address). Both files are mode 0600 and written atomically, so
//! a power cut leaves either the old state or the new one, never half.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ToyError;
use super::client::HubAddress;
use crate::datadir::{PRIVATE_FILE_MODE, create_private_dir, write_private_file};
use crate::domain::{DisplayName, Hex32, ToyId};
use crate::pki::{check_csr, csr_for_key_pem, make_toy_key_and_csr};

const KEY_FILE: &str = "toy.key";
const STATE_FILE: &str = "toy.json";
const STATE_VERSION: u32 = 1;
/// Largest `toy.json` we read; a bigger one is not ours.
const STATE_LIMIT: u64 = 1024 * 1024;

/// What the toy received at pairing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The hub CA certificate (PEM), pinned: the only trust anchor for the hub.
    pub ca_pem: String,
    /// The toy's client certificate (PEM), issued by that CA for the toy's key.
    pub cert_pem: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    toy_id: String,
    name: String,
    #[serde(default)]
    credentials: Option<Credentials>,
    #[serde(default)]
    hub: Option<HubAddress>,
}

/// The toy's identity and pairing, as kept in its state directory.
#[derive(Clone, Debug)]
pub struct ToyState {
    dir: PathBuf,
    key_pem: String,
    spki_der: Vec<u8>,
    toy_id: ToyId,
    name: DisplayName,
    credentials: Option<Credentials>,
    hub: Option<HubAddress>,
}

fn local(path: &Path, e: impl std::fmt::Display) -> ToyError {
    ToyError::Local(format!("{}: {e}", path.display()))
}

impl ToyState {
    /// Opens the state in `dir`, creating the directory (0700), the key
    /// and `toy.json` when missing. A new toy's id is `toy-<8 hex of its key
    /// fingerprint>` and its name `Toy <4 hex>`.
    pub fn open(dir: &Path) -> Result<Self, ToyError> {
        create_private_dir(dir).map_err(|e| local(dir, e))?;
        let key_path = dir.join(KEY_FILE);
        let key_pem = match std::fs::read_to_string(&key_path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (key, _) =
                    make_toy_key_and_csr("hearth-toy").map_err(|e| local(&key_path, e))?;
                write_private_file(&key_path, key.as_bytes()).map_err(|e| local(&key_path, e))?;
                key
            }
            Err(e) => return Err(local(&key_path, e)),
        };
        let spki_der = spki_of(&key_pem, "hearth-toy").map_err(|e| {
            local(
                &key_path,
                format!("{e}; the key is damaged: move the state directory away and pair again"),
            )
        })?;
        let fp = Hex32::sha256(&spki_der).to_hex();
        let state_path = dir.join(STATE_FILE);
        let stored = match read_capped(&state_path) {
            Ok(text) => Some(
                serde_json::from_str::<Stored>(&text)
                    .map_err(|e| local(&state_path, format!("not a toy state file: {e}")))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(local(&state_path, e)),
        };
        let mut state = match stored {
            Some(s) => {
                if s.version != STATE_VERSION {
                    return Err(local(
                        &state_path,
                        format!("unsupported version {}", s.version),
                    ));
                }
                Self {
                    dir: dir.to_owned(),
                    key_pem,
                    spki_der,
                    toy_id: ToyId::parse(&s.toy_id).map_err(|e| local(&state_path, e))?,
                    name: DisplayName::parse(&s.name).map_err(|e| local(&state_path, e))?,
                    credentials: s.credentials,
                    hub: s.hub,
                }
            }
            None => {
                let toy_id = ToyId::parse(&format!("toy-{}", &fp[..8]))
                    .map_err(|e| local(&state_path, e))?;
                let name = DisplayName::parse(&format!("Toy {}", fp[..4].to_ascii_uppercase()))
                    .map_err(|e| local(&state_path, e))?;
                Self {
                    dir: dir.to_owned(),
                    key_pem,
                    spki_der,
                    toy_id,
                    name,
                    credentials: None,
                    hub: None,
                }
            }
        };
        if !state_path.exists() {
            state.save()?;
        }
        // Keep the key's mode strict even if someone loosened it.
        state.tighten_key_mode();
        Ok(state)
    }

    fn tighten_key_mode(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(KEY_FILE);
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE));
    }

    /// Writes `toy.json` atomically, mode 0600.
    pub fn save(&self) -> Result<(), ToyError> {
        let stored = Stored {
            version: STATE_VERSION,
            toy_id: self.toy_id.to_string(),
            name: self.name.to_string(),
            credentials: self.credentials.clone(),
            hub: self.hub.clone(),
        };
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_vec_pretty(&stored).map_err(|e| local(&path, e))?;
        write_private_file(&path, &text).map_err(|e| local(&path, e))
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The toy's stable id.
    pub fn toy_id(&self) -> &ToyId {
        &self.toy_id
    }

    /// Sets the toy id (only while unpaired: the hub knows a paired toy by it).
    pub fn set_toy_id(&mut self, id: ToyId) -> Result<(), ToyError> {
        if self.credentials.is_some() && id != self.toy_id {
            return Err(ToyError::Local(
                "the toy id cannot change while the toy is paired; remove it on the hub and pair again".into(),
            ));
        }
        self.toy_id = id;
        self.save()
    }

    /// The toy's display name.
    pub fn name(&self) -> &DisplayName {
        &self.name
    }

    /// Sets and saves the display name (used at the next pairing and in the mDNS advert).
    pub fn set_name(&mut self, name: DisplayName) -> Result<(), ToyError> {
        if name != self.name {
            self.name = name;
            self.save()?;
        }
        Ok(())
    }

    /// The private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The public key as SubjectPublicKeyInfo DER, exactly as in the toy's CSRs.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// TXT `fp`: SHA-256 of [`Self::spki_der`].
    pub fn fingerprint(&self) -> Hex32 {
        Hex32::sha256(&self.spki_der)
    }

    /// A fresh CSR (PEM) for the toy's key, CN = toy id.
    pub fn csr_pem(&self) -> Result<String, ToyError> {
        csr_for_key_pem(&self.key_pem, self.toy_id.as_str())
            .map_err(|e| ToyError::Local(format!("cannot make a CSR: {e}")))
    }

    /// The pinned CA and client certificate, once paired.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// True when the toy holds a client certificate.
    pub fn is_paired(&self) -> bool {
        self.credentials.is_some()
    }

    /// Stores the outcome of a pairing (and the hub it was made with).
    pub fn set_paired(
        &mut self,
        credentials: Credentials,
        hub: HubAddress,
    ) -> Result<(), ToyError> {
        self.credentials = Some(credentials);
        self.hub = Some(hub);
        self.save()
    }

    /// Forgets the certificate and the pinned CA (the key and id stay).
    pub fn forget_pairing(&mut self) -> Result<(), ToyError> {
        self.credentials = None;
        self.save()
    }

    /// The hub address saved at pairing (used when mDNS finds nothing).
    pub fn hub(&self) -> Option<&HubAddress> {
        self.hub.as_ref()
    }

    /// Remembers the hub's current address.
    pub fn set_hub(&mut self, hub: HubAddress) -> Result<(), ToyError> {
        if self.hub.as_ref() != Some(&hub) {
            self.hub = Some(hub);
            self.save()?;
        }
        Ok(())
    }
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut s = String::new();
    f.take(STATE_LIMIT).read_to_string(&mut s)?;
    Ok(s)
}

/// The SPKI DER exactly as it stands in a CSR made from `key_pem`.
fn spki_of(key_pem: &str, cn: &str) -> Result<Vec<u8>, String> {
    let csr = csr_for_key_pem(key_pem, cn).map_err(|e| e.to_string())?;
    check_csr(&csr).map(|c| c.spki_der).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_id_are_made_once_and_kept_with_strict_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ToyState::open(dir.path()).expect("open");
        assert!(a.toy_id().as_str().starts_with("toy-"));
        assert!(!a.is_paired());
        let b = ToyState::open(dir.path()).expect("reopen");
        assert_eq!(a.toy_id(), b.toy_id());
        assert_eq!(a.key_pem(), b.key_pem());
        assert_eq!(a.spki_der(), b.spki_der());
        for f in [KEY_FILE, STATE_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn a_damaged_state_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        ToyState::open(dir.path()).expect("open");
        std::fs::write(
            dir.path().join(STATE_FILE),
            b"{\"version\": 1, \"toy_id\": \"bad id!\"",
        )
        .expect("write");
        assert!(matches!(
            ToyState::open(dir.path()),
            Err(ToyError::Local(_))
        ));
        std::fs::write(dir.path().join(KEY_FILE), b"garbage").expect("write");
        assert!(matches!(
            ToyState::open(dir.path()),
            Err(ToyError::Local(_))
        ));
    }
}
