//! One conformance suite for the team store (members, sessions, invitations) on every
//! backend (see `common` for how the PostgreSQL cases find their database).

#[macro_use]
mod common;

use common::{postgres_store, sqlite_store};

mod cases {
    use std::collections::BTreeMap;

    use appizer_core::member::{Invite, Member, MemberAccess, Session};
    use appizer_core::tenancy::{Actor, NewAuditEntry};
    use appizer_core::{InviteId, MemberId, OrganizationId, ProjectId, Role, SessionId};
    use appizer_storage::metadata::AuditScope;
    use appizer_storage::team::MemberChange;
    use appizer_storage::testing::Tenant;
    use appizer_storage::{MetadataStore, StoreError};
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + secs, 0).unwrap()
    }

    fn audit(org: OrganizationId, action: &str, target: impl ToString) -> NewAuditEntry {
        NewAuditEntry {
            organization_id: org,
            project_id: None,
            actor: Actor::Cli,
            action: action.into(),
            target_type: "member".into(),
            target_id: target.to_string(),
            details: serde_json::json!({}),
            request_id: None,
            at: t(0),
        }
    }

    fn member(org: OrganizationId, email: &str, role: Option<Role>) -> Member {
        Member {
            id: MemberId::new(),
            organization_id: org,
            email: email.into(),
            name: email.split('@').next().unwrap().into(),
            access: MemberAccess {
                organization_role: role,
                projects: BTreeMap::new(),
            },
            password_hash: "$argon2id$test".into(),
            created_at: t(0),
            updated_at: t(0),
        }
    }

    fn session(member: MemberId, token_hash: &str, at: i64) -> Session {
        Session {
            id: SessionId::new(),
            member_id: member,
            token_hash: token_hash.into(),
            created_at: t(at),
            expires_at: t(at) + Duration::days(14),
            last_seen_at: t(at),
            revoked_at: None,
            ip: Some("127.0.0.1".into()),
            user_agent: Some("test".into()),
        }
    }

    async fn tenant(store: &dyn MetadataStore) -> (Tenant, ProjectId) {
        let project = ProjectId::new();
        let (tenant, _, _) = Tenant::create(store, project, "UTC").await.unwrap();
        (tenant, project)
    }

    pub async fn members_are_created_found_by_email_changed_and_audited(store: &dyn MetadataStore) {
        let (tenant, project) = tenant(store).await;
        let org = tenant.organization;
        let team = store.team();
        let ada = member(org, "ada@example.com", Some(Role::Admin));
        team.create_member(&ada, &audit(org, "member.create", ada.id))
            .await
            .unwrap();
        let again = member(org, "ada@example.com", Some(Role::Viewer));
        assert!(matches!(
            team.create_member(&again, &audit(org, "member.create", again.id))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            team.find_member_by_email("ada@example.com").await.unwrap(),
            Some(ada.clone())
        );
        assert_eq!(
            team.find_member_by_email("bob@example.com").await.unwrap(),
            None
        );
        assert_eq!(
            team.get_member(org, ada.id).await.unwrap(),
            Some(ada.clone())
        );
        assert_eq!(
            team.get_member(OrganizationId::new(), ada.id)
                .await
                .unwrap(),
            None,
            "scoped by organisation"
        );

        let bob = member(org, "bob@example.com", None);
        team.create_member(&bob, &audit(org, "member.create", bob.id))
            .await
            .unwrap();
        let listed: Vec<MemberId> = team
            .list_members(org)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(listed, [ada.id, bob.id]);

        let access = MemberAccess {
            organization_role: None,
            projects: BTreeMap::from([(project, Role::Marketer)]),
        };
        let changed = team
            .update_member(
                org,
                bob.id,
                &MemberChange {
                    name: Some("Robert".into()),
                    access: Some(access.clone()),
                    password_hash: None,
                    at: t(5),
                },
                None,
                &audit(org, "member.update", bob.id),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (changed.name.as_str(), &changed.access),
            ("Robert", &access)
        );
        assert_eq!(changed.updated_at, t(5));
        assert_eq!(team.get_member(org, bob.id).await.unwrap(), Some(changed));
        let actions: Vec<String> = store
            .list_audit(AuditScope::Organization(org), None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.entry.action)
            .collect();
        assert_eq!(
            actions.iter().filter(|a| a.starts_with("member.")).count(),
            3,
            "{actions:?}"
        );
    }

    pub async fn the_last_admin_member_cannot_be_removed_or_demoted(store: &dyn MetadataStore) {
        let (tenant, _) = tenant(store).await;
        let org = tenant.organization;
        let team = store.team();
        let ada = member(org, "ada@example.com", Some(Role::Admin));
        let bob = member(org, "bob@example.com", Some(Role::Viewer));
        for m in [&ada, &bob] {
            team.create_member(m, &audit(org, "member.create", m.id))
                .await
                .unwrap();
        }
        let demote = MemberChange {
            access: Some(MemberAccess {
                organization_role: Some(Role::Viewer),
                projects: BTreeMap::new(),
            }),
            at: t(1),
            ..Default::default()
        };
        assert!(matches!(
            team.update_member(
                org,
                ada.id,
                &demote,
                None,
                &audit(org, "member.update", ada.id)
            )
            .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            team.remove_member(org, ada.id, &audit(org, "member.remove", ada.id))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(team
            .remove_member(org, bob.id, &audit(org, "member.remove", bob.id))
            .await
            .unwrap());
        assert!(!team
            .remove_member(org, bob.id, &audit(org, "member.remove", bob.id))
            .await
            .unwrap());
        assert_eq!(team.list_members(org).await.unwrap().len(), 1);
    }

    pub async fn sessions_are_found_by_token_listed_revoked_and_pruned(store: &dyn MetadataStore) {
        let (tenant, _) = tenant(store).await;
        let org = tenant.organization;
        let team = store.team();
        let ada = member(org, "ada@example.com", Some(Role::Admin));
        team.create_member(&ada, &audit(org, "member.create", ada.id))
            .await
            .unwrap();
        let first = session(ada.id, "hash-1", 0);
        let second = session(ada.id, "hash-2", 10);
        for s in [&first, &second] {
            team.create_session(s).await.unwrap();
        }
        let (found, owner) = team.find_session("hash-1").await.unwrap().unwrap();
        assert_eq!((found, owner), (first.clone(), ada.clone()));
        assert!(team.find_session("hash-3").await.unwrap().is_none());
        team.touch_session(first.id, t(60)).await.unwrap();
        assert_eq!(
            team.find_session("hash-1")
                .await
                .unwrap()
                .unwrap()
                .0
                .last_seen_at,
            t(60)
        );
        let listed: Vec<SessionId> = team
            .list_sessions(ada.id)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, [second.id, first.id], "newest first");

        // Only the member's own session is revoked.
        assert!(team
            .revoke_session(MemberId::new(), first.id, t(70))
            .await
            .unwrap()
            .is_none());
        let revoked = team
            .revoke_session(ada.id, first.id, t(70))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.revoked_at, Some(t(70)));

        // A password change revokes every session but the one kept.
        let third = session(ada.id, "hash-3", 20);
        team.create_session(&third).await.unwrap();
        team.update_member(
            org,
            ada.id,
            &MemberChange {
                password_hash: Some("$argon2id$new".into()),
                at: t(80),
                ..Default::default()
            },
            Some(third.id),
            &audit(org, "member.password", ada.id),
        )
        .await
        .unwrap()
        .unwrap();
        let after = team.list_sessions(ada.id).await.unwrap();
        let revoked_at = |id: SessionId| after.iter().find(|s| s.id == id).unwrap().revoked_at;
        assert_eq!(revoked_at(second.id), Some(t(80)));
        assert_eq!(revoked_at(third.id), None);
        assert_eq!(
            revoked_at(first.id),
            Some(t(70)),
            "kept its first revocation"
        );

        assert_eq!(team.prune_sessions(t(75)).await.unwrap(), 1);
        assert_eq!(team.list_sessions(ada.id).await.unwrap().len(), 2);
    }

    pub async fn an_invitation_is_accepted_once(store: &dyn MetadataStore) {
        let (tenant, project) = tenant(store).await;
        let org = tenant.organization;
        let team = store.team();
        let invite = Invite {
            id: InviteId::new(),
            organization_id: org,
            email: "cy@example.com".into(),
            name: "Cy".into(),
            access: MemberAccess {
                organization_role: None,
                projects: BTreeMap::from([(project, Role::Analyst)]),
            },
            token_hash: "invite-hash".into(),
            created_by: None,
            created_at: t(0),
            expires_at: t(0) + Duration::days(7),
            accepted_at: None,
        };
        team.create_invite(&invite, &audit(org, "member.invite", invite.id))
            .await
            .unwrap();
        assert_eq!(
            team.find_invite("invite-hash").await.unwrap(),
            Some(invite.clone())
        );
        assert_eq!(
            team.list_invites(org).await.unwrap(),
            std::slice::from_ref(&invite)
        );
        let cy = Member {
            access: invite.access.clone(),
            ..member(org, "cy@example.com", None)
        };
        assert!(team
            .accept_invite(invite.id, &cy, &audit(org, "member.join", cy.id))
            .await
            .unwrap());
        let twice = Member {
            id: MemberId::new(),
            ..cy.clone()
        };
        assert!(!team
            .accept_invite(invite.id, &twice, &audit(org, "member.join", twice.id))
            .await
            .unwrap());
        assert_eq!(team.list_members(org).await.unwrap(), [cy]);
        assert!(team.list_invites(org).await.unwrap().is_empty());
        assert!(
            !team
                .delete_invite(org, invite.id, &audit(org, "member.uninvite", invite.id))
                .await
                .unwrap(),
            "an accepted invitation is not withdrawn"
        );
    }
}

all_backends!(
    members_are_created_found_by_email_changed_and_audited,
    the_last_admin_member_cannot_be_removed_or_demoted,
    sessions_are_found_by_token_listed_revoked_and_pruned,
    an_invitation_is_accepted_once,
);
