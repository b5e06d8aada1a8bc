//! Typed identifiers. Each wraps a time-ordered UUID (v7) so ids sort by creation time
//! and a project id can never be passed where a key id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

typed_id!(
    /// An organisation: the owner of projects and of organisation-wide keys.
    OrganizationId
);
typed_id!(
    /// A project: the unit of tenancy for events, persons, campaigns and keys.
    ProjectId
);
typed_id!(
    /// An API key (secret or write key). Not the key itself: keys are stored hashed.
    KeyId
);
typed_id!(
    /// A person: one real user, known by one or more distinct ids.
    PersonId
);
typed_id!(
    /// One merge of a person into another, as written in the merge log.
    MergeId
);
typed_id!(
    /// A saved analytics definition: a custom metric or a segment.
    DefinitionId
);
typed_id!(
    /// A push device: an app install or a browser subscription of a person.
    DeviceId
);
typed_id!(
    /// A push message: one send to an audience, delivered to each of its devices.
    MessageId
);
typed_id!(
    /// A campaign: an audience, content variants and a schedule, sent as messages.
    CampaignId
);
typed_id!(
    /// A team member: a person who signs in to the dashboard (not a person of the data).
    MemberId
);
typed_id!(
    /// A signed-in session of a team member.
    SessionId
);
typed_id!(
    /// An invitation for a new team member, accepted once through its link.
    InviteId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text_and_sort_by_creation() {
        let a = ProjectId::new();
        let b = ProjectId::new();
        assert_eq!(a.to_string().parse::<ProjectId>().unwrap(), a);
        assert!(a < b, "v7 ids are time ordered");
        assert!("not-a-uuid".parse::<ProjectId>().is_err());
    }
}
