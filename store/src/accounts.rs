use async_trait::async_trait;
use chrono::{DateTime, Utc};
use movies_events::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: String,
    /// A PHC-format password hash (argon2id); never the password.
    pub password_hash: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// A disabled account cannot sign in, and its tokens stop working on writes.
    pub disabled: bool,
}

/// What an operator changes of an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub password_hash: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account named {0:?} already exists")]
    Exists(String),
    #[error("the account store is unavailable")]
    Unavailable(#[from] sqlx::Error),
}

/// Which generation of each projection is live (0 until the first replay).
#[async_trait]
pub trait GenerationStore: Send + Sync + 'static {
    async fn generation(&self, projection: &str) -> Result<i64, sqlx::Error>;
    /// Sets several pointers in one transaction: readers see all flips or none.
    async fn set_generations(&self, generations: &[(&str, i64)]) -> Result<(), sqlx::Error>;
}

/// Login accounts. Usernames are unique; `create` never overwrites.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn create(&self, account: &Account) -> Result<(), AccountError>;
    async fn find(&self, username: &str) -> Result<Option<Account>, AccountError>;
    async fn count_admins(&self) -> Result<i64, AccountError>;
    /// Every account, by name.
    async fn list(&self) -> Result<Vec<Account>, AccountError>;
    /// Applies `change` to the account; false if there is no such account.
    async fn update(&self, username: &str, change: &AccountChange) -> Result<bool, AccountError>;
}
