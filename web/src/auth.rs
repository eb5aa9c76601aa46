//! Authentication: Ed25519-signed JWTs (the query side holds only the public key, so it can
//! verify but never mint), argon2id password hashes, and extractors for callers and admins.

use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use movies_events::Role;
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

pub const ACCESS_TOKEN_TTL_SECONDS: i64 = 3600;
const ISSUER: &str = "movies";
const AUDIENCE: &str = "movies-api";
pub const PRIVATE_KEY_FILE: &str = "jwt-ed25519.pem";
pub const PUBLIC_KEY_FILE: &str = "jwt-ed25519.pub.pem";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    /// Not valid before (tokens issued before this field existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this server holds only the public key and cannot issue tokens")]
    CannotIssue,
    #[error("invalid key: {0}")]
    Key(String),
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
}

/// One public key tokens may be signed with, under its key id (its RFC 7638 thumbprint).
#[derive(Clone)]
struct Verifying {
    kid: String,
    key: DecodingKey,
    jwk: Jwk,
}

impl Verifying {
    fn from_pem(public_pem: &[u8]) -> Result<Self, AuthError> {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let text = std::str::from_utf8(public_pem).map_err(|e| AuthError::Key(e.to_string()))?;
        let public = ed25519_dalek::VerifyingKey::from_public_key_pem(text)
            .map_err(|e| AuthError::Key(e.to_string()))?;
        let x = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, public.as_bytes());
        let described =
            serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig" });
        let mut jwk: Jwk = serde_json::from_value(described).map_err(|e| AuthError::Key(e.to_string()))?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common.key_id = Some(kid.clone());
        let key = DecodingKey::from_ed_components(&x).map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(Self { kid, key, jwk })
    }
}

/// The keys tokens are signed and verified with: one signing key (on the command side) and every
/// public key a token may still carry a signature of (the current one, and during a rollover
/// the retired ones), each named by the `kid` a token's header gives.
#[derive(Clone)]
pub struct JwtKeys {
    signing: Option<(String, EncodingKey)>,
    verifying: Vec<Verifying>,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.verifying.iter().map(|v| v.kid.as_str()).collect();
        f.debug_struct("JwtKeys")
            .field("can_issue", &self.signing.is_some())
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// A fresh key pair as PEM: (PKCS#8 private key, SPKI public key).
    pub fn generate_pem() -> Result<(String, String), AuthError> {
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let private = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| AuthError::Key(e.to_string()))?;
        let public = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| AuthError::Key(e.to_string()))?;
        Ok((private.to_string(), public))
    }

    /// Keys that can sign (with the private key) and verify (with its public key).
    pub fn from_pem(private_pem: &[u8], public_pem: &[u8]) -> Result<Self, AuthError> {
        let mut keys = Self::verify_only(public_pem)?;
        let encoding = EncodingKey::from_ed_pem(private_pem).map_err(|e| AuthError::Key(e.to_string()))?;
        keys.signing = Some((keys.verifying[0].kid.clone(), encoding));
        Ok(keys)
    }

    /// Keys that can only verify: what a query-api replica holds.
    pub fn verify_only(public_pem: &[u8]) -> Result<Self, AuthError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Self { signing: None, verifying: vec![Verifying::from_pem(public_pem)?], validation })
    }

    /// Also accepts tokens signed with these (retired) keys: during a rollover, tokens issued
    /// before it stay valid until they expire.
    pub fn also_verifying(mut self, retired_pems: &[Vec<u8>]) -> Result<Self, AuthError> {
        for pem in retired_pems {
            let key = Verifying::from_pem(pem)?;
            if !self.verifying.iter().any(|v| v.kid == key.kid) {
                self.verifying.push(key);
            }
        }
        Ok(self)
    }

    /// Loads the key pair from `dir`, creating it (private key readable by the owner only) on
    /// first use, with every retired public key there (`RETIRED_PREFIX*.pem`).
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        let (private_path, public_path) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
        if !private_path.exists() {
            let (private, public) = Self::generate_pem()?;
            std::fs::create_dir_all(dir)?;
            write_private(&private_path, private.as_bytes())?;
            std::fs::write(&public_path, public)?;
        }
        Self::from_pem(&std::fs::read(private_path)?, &std::fs::read(public_path)?)?
            .also_verifying(&retired_keys(dir)?)
    }

    /// Replaces the key pair in `dir` with a new one; the old public key stays beside it as a
    /// retired key (still verifying) until an operator removes it, a token's lifetime later.
    /// Returns the retired key's file.
    pub fn rotate(dir: &Path) -> Result<std::path::PathBuf, AuthError> {
        let (private_path, public_path) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
        let old = Verifying::from_pem(&std::fs::read(&public_path)?)?;
        let retired = dir.join(format!("{RETIRED_PREFIX}{}.pem", old.kid));
        std::fs::rename(&public_path, &retired)?;
        let (private, public) = Self::generate_pem()?;
        let staged = dir.join(format!("{PRIVATE_KEY_FILE}.new"));
        let _ = std::fs::remove_file(&staged);
        write_private(&staged, private.as_bytes())?;
        std::fs::write(&public_path, public)?;
        std::fs::rename(&staged, &private_path)?;
        Ok(retired)
    }

    pub fn issue(&self, subject: &str, role: Role, now: i64, ttl_seconds: i64) -> Result<String, AuthError> {
        let (kid, key) = self.signing.as_ref().ok_or(AuthError::CannotIssue)?;
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            nbf: Some(now),
            exp: now + ttl_seconds,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| AuthError::Key(e.to_string()))
    }

    /// Checks signature (with the key its `kid` names; a token without one is tried against
    /// each key), algorithm (EdDSA only: `none` and HMAC tokens are refused), issuer, audience,
    /// expiry and not-before.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let decode = |v: &Verifying| jsonwebtoken::decode::<Claims>(token, &v.key, &self.validation).ok();
        match header.kid {
            Some(kid) => decode(self.verifying.iter().find(|v| v.kid == kid)?),
            None => self.verifying.iter().find_map(decode),
        }
        .map(|data| data.claims)
    }

    /// The public keys as a JWKS document (RFC 7517), current first.
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: self.verifying.iter().map(|v| v.jwk.clone()).collect() }
    }
}

/// Retired public keys in a key directory start with this.
pub const RETIRED_PREFIX: &str = "jwt-ed25519.retired-";

fn retired_keys(dir: &Path) -> Result<Vec<Vec<u8>>, AuthError> {
    let mut pems = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(RETIRED_PREFIX) && name.ends_with(".pem") {
            pems.push(std::fs::read(entry.path())?);
        }
    }
    Ok(pems)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Hashes and checks passwords with argon2id.
#[derive(Clone)]
pub struct PasswordHasher {
    argon: Argon2<'static>,
    /// A hash of nothing, checked when a username is unknown so both paths cost the same.
    decoy: String,
}

impl PasswordHasher {
    /// OWASP's recommended argon2id parameters.
    pub fn production() -> Self {
        Self::with_params(Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters"))
    }

    /// Deliberately cheap parameters, for tests only.
    pub fn cheap_for_tests() -> Self {
        Self::with_params(Params::new(8, 1, 1, None).expect("valid argon2 parameters"))
    }

    fn with_params(params: Params) -> Self {
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut hasher = Self { argon, decoy: String::new() };
        hasher.decoy = hasher.hash("decoy password");
        hasher
    }

    pub fn hash(&self, password: &str) -> String {
        use argon2::password_hash::PasswordHasher as _;
        let salt = SaltString::generate(&mut OsRng);
        // Hashing with valid parameters and a fresh salt does not fail.
        self.argon.hash_password(password.as_bytes(), &salt).expect("argon2 hashing").to_string()
    }

    /// True if `password` matches `hash`. With no hash (unknown user) it spends the same time and
    /// says no.
    pub fn verify(&self, hash: Option<&str>, password: &str) -> bool {
        let matches = |h: &str| {
            PasswordHash::new(h)
                .is_ok_and(|parsed| self.argon.verify_password(password.as_bytes(), &parsed).is_ok())
        };
        match hash {
            Some(hash) => matches(hash),
            None => {
                let _ = matches(&self.decoy);
                false
            }
        }
    }
}

/// Who is calling, as their verified token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

/// The caller of a read endpoint: anonymous, or a verified user or admin. A token that is sent
/// but does not verify is refused (401), never silently treated as anonymous.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<Principal>);

/// An admin caller: 401 without a valid token (or with one whose account is gone or disabled),
/// 403 with a non-admin one (or one whose account is no longer an admin's). The token's subject
/// is checked against the accounts as they are now (`Subjects`), so a token does not outlive its
/// account's removal, disabling or demotion by its hour.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

/// The accounts as they are now, as the `Admin` extractor checks them.
#[async_trait::async_trait]
pub trait Subjects: Send + Sync + 'static {
    /// The subject's role now: `None` if it has no account, or its account is disabled.
    async fn role_now(&self, subject: &str) -> Result<Option<Role>, ApiError>;
}

fn bearer(parts: &Parts, keys: &JwtKeys) -> Result<Option<Principal>, ApiError> {
    // Verified once per request: the rate limiter leaves what it verified here.
    if let Some(principal) = parts.extensions.get::<Principal>() {
        return Ok(Some(principal.clone()));
    }
    verified(&parts.headers, keys)
}

/// The caller an `Authorization: Bearer` header names: `None` without the header, an error for a
/// malformed header or a token that does not verify.
pub(crate) fn verified(
    headers: &axum::http::HeaderMap,
    keys: &JwtKeys,
) -> Result<Option<Principal>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
    let claims = keys
        .verify(token.trim())
        .ok_or_else(|| ApiError::Unauthorized("the token is invalid or expired".into()))?;
    Ok(Some(Principal { subject: claims.sub, role: claims.role }))
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<JwtKeys>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller(bearer(parts, &Arc::<JwtKeys>::from_ref(state))?))
    }
}

impl<S> FromRequestParts<S> for Admin
where
    Arc<JwtKeys>: FromRef<S>,
    Arc<dyn Subjects>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = match bearer(parts, &Arc::<JwtKeys>::from_ref(state))? {
            None => return Err(ApiError::Unauthorized("this endpoint needs an admin's Bearer token".into())),
            Some(p) if p.role == Role::Admin => p,
            Some(_) => return Err(ApiError::Forbidden("this endpoint is for admins only".into())),
        };
        match Arc::<dyn Subjects>::from_ref(state).role_now(&principal.subject).await? {
            Some(Role::Admin) => Ok(Admin(principal)),
            Some(_) => Err(ApiError::Forbidden("this account is no longer an admin's".into())),
            None => Err(ApiError::Unauthorized("the token's account does not exist or is disabled".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        let (private, public) = JwtKeys::generate_pem().unwrap();
        JwtKeys::from_pem(private.as_bytes(), public.as_bytes()).unwrap()
    }

    #[test]
    fn an_issued_token_verifies_with_the_public_key_alone() {
        let (private, public) = JwtKeys::generate_pem().unwrap();
        let signer = JwtKeys::from_pem(private.as_bytes(), public.as_bytes()).unwrap();
        let verifier = JwtKeys::verify_only(public.as_bytes()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let token = signer.issue("alice", Role::Admin, now, 60).unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("alice", Role::Admin));
        assert!(matches!(verifier.issue("alice", Role::Admin, now, 60), Err(AuthError::CannotIssue)));
    }

    #[test]
    fn expired_and_foreign_tokens_do_not_verify() {
        let (mine, theirs) = (keys(), keys());
        let now = chrono::Utc::now().timestamp();
        assert!(mine.verify(&mine.issue("a", Role::User, now - 120, 60).unwrap()).is_none());
        assert!(mine.verify(&theirs.issue("a", Role::User, now, 60).unwrap()).is_none());
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let (private, public) = JwtKeys::generate_pem().unwrap();
        let keys = JwtKeys::from_pem(private.as_bytes(), public.as_bytes()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let sign = |nbf: i64| {
            let claims = Claims {
                sub: "a".into(),
                role: Role::Admin,
                iss: ISSUER.into(),
                aud: AUDIENCE.into(),
                iat: now,
                nbf: Some(nbf),
                exp: now + 3600,
            };
            let key = EncodingKey::from_ed_pem(private.as_bytes()).unwrap();
            jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap()
        };
        assert!(keys.verify(&sign(now + 600)).is_none(), "a token valid only in ten minutes verified");
        assert!(keys.verify(&sign(now - 1)).is_some());
    }

    #[test]
    fn after_a_rotation_old_and_new_tokens_verify_and_the_jwks_lists_both_keys() {
        let dir = tempfile::tempdir().unwrap();
        let before = JwtKeys::load_or_create(dir.path()).unwrap();
        let now = chrono::Utc::now().timestamp();
        let old_token = before.issue("alice", Role::Admin, now, 60).unwrap();
        let retired = JwtKeys::rotate(dir.path()).unwrap();
        assert!(retired.file_name().unwrap().to_string_lossy().starts_with(RETIRED_PREFIX));
        let after = JwtKeys::load_or_create(dir.path()).unwrap();
        let new_token = after.issue("bob", Role::User, now, 60).unwrap();
        assert_eq!(after.verify(&old_token).unwrap().sub, "alice");
        assert_eq!(after.verify(&new_token).unwrap().sub, "bob");
        assert!(before.verify(&new_token).is_none(), "the old keys know nothing of the new one");
        let kids: Vec<String> = after.jwks().keys.iter().map(|k| k.common.key_id.clone().unwrap()).collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(jsonwebtoken::decode_header(&new_token).unwrap().kid.as_deref(), Some(kids[0].as_str()));
        assert_eq!(jsonwebtoken::decode_header(&old_token).unwrap().kid.as_deref(), Some(kids[1].as_str()));
        // Once the retired key is removed, its tokens stop verifying.
        std::fs::remove_file(retired).unwrap();
        assert!(JwtKeys::load_or_create(dir.path()).unwrap().verify(&old_token).is_none());
    }

    #[test]
    fn a_token_naming_an_unknown_key_is_refused() {
        let keys = keys();
        let now = chrono::Utc::now().timestamp();
        let token = keys.issue("a", Role::User, now, 60).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": "someone-else" });
        parts[0] =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header.to_string());
        assert!(keys.verify(&parts.join(".")).is_none());
    }

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let hasher = PasswordHasher::cheap_for_tests();
        let hash = hasher.hash("correct horse");
        assert!(hasher.verify(Some(&hash), "correct horse"));
        assert!(!hasher.verify(Some(&hash), "wrong"));
        assert!(!hasher.verify(None, "correct horse"));
        assert!(!hasher.verify(Some("not a hash"), "correct horse"));
    }
}
