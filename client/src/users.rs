//! Users and their rights (an administrator's calls; see the server's docs/security.md).
//!
//! Creating a user is not idempotent: if its answer is lost to a failover, the retry answers
//! `already_exists` (the user was created).

use txmq_proto::client::{
    AccessRight, ChangePasswordRequest, CreateUserRequest, DeleteUserRequest, GrantRequest,
    ListUsersRequest, RevokeRequest, UserInfo, WhoAmIRequest,
};

use crate::{Client, ClientError};

impl Client {
    pub async fn create_user(&self, name: &str, password: &str) -> Result<UserInfo, ClientError> {
        let req = CreateUserRequest {
            name: name.into(),
            password: password.into(),
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.create_user(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), ClientError> {
        let req = DeleteUserRequest { name: name.into() };
        self.retrying(|mut c, _| {
            let r = req.clone();
            async move { c.delete_user(r).await }
        })
        .await?;
        Ok(())
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>, ClientError> {
        let resp = self
            .retrying(|mut c, _| async move { c.list_users(ListUsersRequest {}).await })
            .await?;
        Ok(resp.into_inner().users)
    }

    pub async fn change_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<UserInfo, ClientError> {
        let req = ChangePasswordRequest {
            name: name.into(),
            password: password.into(),
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.change_password(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Gives `user` a right (a repeated grant changes nothing).
    pub async fn grant(&self, user: &str, right: AccessRight) -> Result<UserInfo, ClientError> {
        let req = GrantRequest {
            user: user.into(),
            right: Some(right),
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.grant(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Takes a right away (revoking one the user does not hold changes nothing).
    pub async fn revoke(&self, user: &str, right: AccessRight) -> Result<UserInfo, ClientError> {
        let req = RevokeRequest {
            user: user.into(),
            right: Some(right),
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.revoke(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// Makes a new secret key for `name` (replacing any) and returns it; the only place it is
    /// ever shown. With `remove`, deletes it (the answer's secret is empty).
    pub async fn create_access_key(
        &self,
        name: &str,
        remove: bool,
    ) -> Result<crate::AccessKeyResponse, ClientError> {
        let req = crate::CreateAccessKeyRequest {
            name: name.to_string(),
            remove,
        };
        let resp = self
            .retrying(|mut c, _| {
                let r = req.clone();
                async move { c.create_access_key(r).await }
            })
            .await?;
        Ok(resp.into_inner())
    }

    /// The caller's name and rights, as the node asked sees them.
    pub async fn who_am_i(&self) -> Result<UserInfo, ClientError> {
        let resp = self
            .retrying(|mut c, _| async move { c.who_am_i(WhoAmIRequest {}).await })
            .await?;
        Ok(resp.into_inner())
    }
}
