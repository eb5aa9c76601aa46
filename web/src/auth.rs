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

/// The keys tokens are signed and verified with.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys").field("can_issue", &self.encoding.is_some()).finish_non_exhaustive()
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

    /// Keys that can sign and verify.
    pub fn from_pem(private_pem: &[u8], public_pem: &[u8]) -> Result<Self, AuthError> {
        let mut keys = Self::verify_only(public_pem)?;
        keys.encoding =
            Some(EncodingKey::from_ed_pem(private_pem).map_err(|e| AuthError::Key(e.to_string()))?);
        Ok(keys)
    }

    /// Keys that can only verify: what a query-api replica holds.
    pub fn verify_only(public_pem: &[u8]) -> Result<Self, AuthError> {
        let decoding = DecodingKey::from_ed_pem(public_pem).map_err(|e| AuthError::Key(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self { encoding: None, decoding, validation })
    }

    /// Loads the key pair from `dir`, creating it (private key readable by the owner only) on
    /// first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        let (private_path, public_path) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
        if !private_path.exists() {
            let (private, public) = Self::generate_pem()?;
            std::fs::create_dir_all(dir)?;
            write_private(&private_path, private.as_bytes())?;
            std::fs::write(&public_path, public)?;
        }
        Self::from_pem(&std::fs::read(private_path)?, &std::fs::read(public_path)?)
    }

    pub fn issue(&self, subject: &str, role: Role, now: i64, ttl_seconds: i64) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotIssue)?;
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + ttl_seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, key)
            .map_err(|e| AuthError::Key(e.to_string()))
    }

    /// Checks signature, algorithm (EdDSA only: `none` and HMAC tokens are refused), issuer,
    /// audience and expiry.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|data| data.claims)
    }
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

/// An admin caller: 401 without a valid token, 403 with a non-admin one.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

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
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match bearer(parts, &Arc::<JwtKeys>::from_ref(state))? {
            None => Err(ApiError::Unauthorized("this endpoint needs an admin's Bearer token".into())),
            Some(p) if p.role == Role::Admin => Ok(Admin(p)),
            Some(_) => Err(ApiError::Forbidden("this endpoint is for admins only".into())),
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
    fn a_password_verifies_only_against_its_own_hash() {
        let hasher = PasswordHasher::cheap_for_tests();
        let hash = hasher.hash("correct horse");
        assert!(hasher.verify(Some(&hash), "correct horse"));
        assert!(!hasher.verify(Some(&hash), "wrong"));
        assert!(!hasher.verify(None, "correct horse"));
        assert!(!hasher.verify(Some("not a hash"), "correct horse"));
    }
}
