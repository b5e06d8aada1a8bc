//! Team members (the people who sign in to the dashboard, distinct from the persons in
//! the data), their access, passwords, sessions and invitations.
//!
//! A member's access is a role in the whole organisation, a role per project, or both;
//! a project's own role wins there. Passwords are hashed with argon2id (a PHC string
//! with its salt and parameters). Session and invitation tokens carry 190 bits of
//! randomness and are stored as SHA-256, like API keys: a slow hash adds nothing there.

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::ids::{InviteId, MemberId, OrganizationId, ProjectId, SessionId};
use crate::keys::hash_key;
use crate::role::Role;

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted (hashing work is bounded by it).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Longest email address accepted (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;

/// What a member may do: a role in every project, and roles in single projects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberAccess {
    /// The member's role in every project of the organisation (and, as admin, over
    /// the organisation itself: projects, members).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_role: Option<Role>,
    /// Roles in single projects, over the organisation's role there.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = BTreeMap<String, Role>)]
    pub projects: BTreeMap<ProjectId, Role>,
}

impl MemberAccess {
    /// The member's role in `project`, if any.
    pub fn role_in(&self, project: ProjectId) -> Option<Role> {
        self.projects
            .get(&project)
            .copied()
            .or(self.organization_role)
    }

    /// Whether the member has any role at all.
    pub fn is_empty(&self) -> bool {
        self.organization_role.is_none() && self.projects.is_empty()
    }
}

/// A stored team member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: MemberId,
    pub organization_id: OrganizationId,
    /// Lower case; unique across the installation (sign-in names no organisation).
    pub email: String,
    pub name: String,
    pub access: MemberAccess,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A signed-in session. The token is in the member's cookie; only its hash is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub member_id: MemberId,
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    /// The session ends then, whatever its use.
    pub expires_at: DateTime<Utc>,
    /// Updated at most once a minute; a session unused for the idle limit ends.
    pub last_seen_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The address and user agent it was opened from, to recognise it in a list.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Session {
    /// Whether the session still opens the API at `now`, with `idle` the idle limit.
    pub fn is_live(&self, now: DateTime<Utc>, idle: chrono::Duration) -> bool {
        self.revoked_at.is_none() && now < self.expires_at && now < self.last_seen_at + idle
    }
}

/// An invitation to join the organisation, accepted once through its link.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    pub id: InviteId,
    pub organization_id: OrganizationId,
    pub email: String,
    pub name: String,
    pub access: MemberAccess,
    pub token_hash: String,
    pub created_by: Option<MemberId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
}

/// A new session or invitation token: the plaintext goes to the member once.
pub struct Token {
    pub plaintext: String,
    pub hash: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").finish_non_exhaustive()
    }
}

/// Characters of randomness in a token (62 symbols each: about 190 bits).
const TOKEN_CHARS: usize = 32;

impl Token {
    /// A fresh token starting with `prefix` (`apz_ss_` sessions, `apz_in_` invitations).
    pub fn generate(prefix: &str) -> Self {
        let plaintext = format!(
            "{prefix}{}",
            Alphanumeric.sample_string(&mut rand::rng(), TOKEN_CHARS)
        );
        Self {
            hash: hash_key(&plaintext),
            plaintext,
        }
    }
}

/// The token a session's writes must carry (`X-CSRF-Token`), derived from its own
/// token so it needs no storage, and revealing it reveals nothing of the session token.
pub fn csrf_token(session_token: &str) -> String {
    hash_key(&format!("csrf:{session_token}"))
}

/// Why a password or email is refused: the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The email as stored: trimmed, lower case; refused unless it looks like an address.
pub fn normalize_email(email: &str) -> Result<String, Refused> {
    let email = email.trim().to_lowercase();
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(Refused(format!(
            "must be an email address (name@domain, at most {MAX_EMAIL_CHARS} characters)"
        )))
    }
}

/// The argon2id hash of `password`, after checking its length.
pub fn hash_password(password: &str) -> Result<String, Refused> {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        return Err(Refused(format!(
            "must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Refused(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Refused(e.to_string()))
}

/// Whether `password` matches the stored `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A password to print once, for the first admin: 20 letters and digits.
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_with_argon2id_and_verified() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(
            hash,
            hash_password("correct horse battery").unwrap(),
            "salted"
        );
        assert!(hash_password("short").is_err());
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
        let generated = generate_password();
        assert_eq!(generated.len(), 20);
        assert!(hash_password(&generated).is_ok());
    }

    #[test]
    fn emails_are_trimmed_lowered_and_checked() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "a b@example.com",
            "a@b@c",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_projects_role_wins_over_the_organisations() {
        let (p, q) = (ProjectId::new(), ProjectId::new());
        let access = MemberAccess {
            organization_role: Some(Role::Viewer),
            projects: BTreeMap::from([(p, Role::Marketer)]),
        };
        assert_eq!(access.role_in(p), Some(Role::Marketer));
        assert_eq!(access.role_in(q), Some(Role::Viewer));
        let only = MemberAccess {
            organization_role: None,
            projects: BTreeMap::from([(p, Role::Analyst)]),
        };
        assert_eq!(only.role_in(q), None);
        assert!(MemberAccess::default().is_empty());
    }

    #[test]
    fn sessions_end_at_expiry_idleness_or_revocation() {
        let now = Utc::now();
        let session = Session {
            id: SessionId::new(),
            member_id: MemberId::new(),
            token_hash: String::new(),
            created_at: now,
            expires_at: now + chrono::Duration::days(14),
            last_seen_at: now,
            revoked_at: None,
            ip: None,
            user_agent: None,
        };
        let idle = chrono::Duration::days(3);
        assert!(session.is_live(now, idle));
        assert!(!session.is_live(now + chrono::Duration::days(4), idle));
        assert!(!session.is_live(now + chrono::Duration::days(15), chrono::Duration::days(30)));
        let revoked = Session {
            revoked_at: Some(now),
            ..session
        };
        assert!(!revoked.is_live(now, idle));
    }

    #[test]
    fn tokens_are_prefixed_and_csrf_tokens_derived() {
        let t = Token::generate("apz_ss_");
        assert!(t.plaintext.starts_with("apz_ss_"));
        assert_eq!(t.hash, hash_key(&t.plaintext));
        assert_eq!(csrf_token(&t.plaintext), csrf_token(&t.plaintext));
        assert_ne!(csrf_token(&t.plaintext), t.hash);
    }
}
