//! What the command side checks of accounts beyond a token's signature: that its subject still
//! has an enabled account with the role it claims (`AccountSubjects`, cached for a few seconds so
//! it costs a write nothing), and how often a sign-in may fail (`SignInThrottle`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use movies_events::Role;
use movies_store::AccountStore;
use movies_web::{ApiError, Subjects};

/// How long an account's state is trusted before it is read again: a disabled account's or a
/// demoted admin's tokens stop working on writes within this.
pub const ACCOUNT_STATE_TTL: Duration = Duration::from_secs(5);

/// `Subjects` over the account store, each answer kept for `ACCOUNT_STATE_TTL`.
pub struct AccountSubjects {
    accounts: Arc<dyn AccountStore>,
    roles: moka::future::Cache<String, Option<Role>>,
}

impl AccountSubjects {
    pub fn new(accounts: Arc<dyn AccountStore>) -> Self {
        let roles =
            moka::future::Cache::builder().max_capacity(10_000).time_to_live(ACCOUNT_STATE_TTL).build();
        Self { accounts, roles }
    }
}

#[async_trait]
impl Subjects for AccountSubjects {
    async fn role_now(&self, subject: &str) -> Result<Option<Role>, ApiError> {
        let accounts = self.accounts.clone();
        let owned = subject.to_owned();
        self.roles
            .try_get_with(subject.to_owned(), async move {
                let account = accounts.find(&owned).await?;
                Ok::<_, movies_store::AccountError>(account.filter(|a| !a.disabled).map(|a| a.role))
            })
            .await
            .map_err(|e| ApiError::Unavailable(format!("the account store: {e}")))
    }
}

/// Failed sign-ins allowed per username in a window.
pub const FAILURES_PER_USERNAME: u32 = 10;
/// Failed sign-ins allowed per client address in a window (several people may share one).
pub const FAILURES_PER_ADDRESS: u32 = 50;
/// The window failures are counted in, from the first.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// Counts failed sign-ins per username and per client address. Past either limit, sign-ins for
/// that name or from that address are refused (429, `Retry-After`) until the window that counted
/// them ends, before any password is hashed: guessing costs the guesser, not the server.
pub struct SignInThrottle {
    names: moka::sync::Cache<String, Arc<Failures>>,
    addresses: moka::sync::Cache<IpAddr, Arc<Failures>>,
}

struct Failures {
    since: Instant,
    count: AtomicU32,
}

impl Failures {
    fn new() -> Arc<Self> {
        Arc::new(Self { since: Instant::now(), count: AtomicU32::new(0) })
    }

    /// Seconds until this window ends, if its failures have reached `limit`.
    fn blocked(&self, limit: u32) -> Option<u64> {
        (self.count.load(Ordering::Relaxed) >= limit)
            .then(|| FAILURE_WINDOW.saturating_sub(self.since.elapsed()).as_secs().max(1))
    }
}

impl Default for SignInThrottle {
    fn default() -> Self {
        // Entries live one window from their first failure; the capacities bound the memory a
        // flood of made-up names or addresses can take (the least used are dropped first).
        Self {
            names: moka::sync::Cache::builder().time_to_live(FAILURE_WINDOW).max_capacity(100_000).build(),
            addresses: moka::sync::Cache::builder()
                .time_to_live(FAILURE_WINDOW)
                .max_capacity(100_000)
                .build(),
        }
    }
}

impl SignInThrottle {
    /// Refuses a sign-in for `username` from `address` while either has failed too often. A
    /// name no account can have is `None`: only its address is looked at.
    pub fn check(&self, username: Option<&str>, address: Option<IpAddr>) -> Result<(), ApiError> {
        let by_name = username.and_then(|u| self.names.get(u)).and_then(|f| f.blocked(FAILURES_PER_USERNAME));
        let by_address =
            address.and_then(|a| self.addresses.get(&a)).and_then(|f| f.blocked(FAILURES_PER_ADDRESS));
        match by_name.max(by_address) {
            Some(retry_after) => Err(ApiError::TooManyRequests {
                detail: format!("too many failed sign-ins; retry in {retry_after} s"),
                retry_after,
            }),
            None => Ok(()),
        }
    }

    /// Counts a failed sign-in against `username` (unless `None`: it is not kept) and `address`.
    pub fn failed(&self, username: Option<&str>, address: Option<IpAddr>) {
        if let Some(username) = username {
            self.names.get_with(username.to_owned(), Failures::new).count.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(address) = address {
            self.addresses.get_with(address, Failures::new).count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_refused_after_its_failures_and_others_are_not() {
        let throttle = SignInThrottle::default();
        let here = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..FAILURES_PER_USERNAME {
            assert!(throttle.check(Some("admin"), here).is_ok());
            throttle.failed(Some("admin"), here);
        }
        let Err(ApiError::TooManyRequests { retry_after, .. }) = throttle.check(Some("admin"), here) else {
            panic!("the name was not throttled");
        };
        assert!((1..=FAILURE_WINDOW.as_secs()).contains(&retry_after));
        assert!(throttle.check(Some("alice"), here).is_ok(), "another name from the same address");
    }

    #[test]
    fn an_address_is_refused_after_its_failures_whatever_the_name() {
        let throttle = SignInThrottle::default();
        let here = Some(IpAddr::from([10, 0, 0, 2]));
        for n in 0..FAILURES_PER_ADDRESS {
            throttle.failed(Some(&format!("name-{n}")), here);
        }
        assert!(throttle.check(Some("fresh-name"), here).is_err());
        assert!(throttle.check(Some("fresh-name"), Some(IpAddr::from([10, 0, 0, 3]))).is_ok());
        // Names no account can have are not kept, so none of them is ever throttled by name.
        for _ in 0..FAILURES_PER_USERNAME {
            throttle.failed(None, None);
        }
        assert!(throttle.check(Some(""), None).is_ok());
    }
}
