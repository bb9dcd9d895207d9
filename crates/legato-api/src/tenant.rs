use axum::http::HeaderMap;
use legato_model::TenantId;

use crate::ApiError;

pub const ORG_ID_HEADER: &str = "x-scope-orgid";

/// The request's tenant: `single-tenant` with multitenancy off, else the `X-Scope-OrgID` value.
pub fn resolve(multitenancy: bool, value: Option<&str>) -> Result<TenantId, ApiError> {
    if !multitenancy {
        return Ok(TenantId::single());
    }
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Err(ApiError::NoOrgId);
    };
    TenantId::new(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}

pub fn from_headers(multitenancy: bool, headers: &HeaderMap) -> Result<TenantId, ApiError> {
    resolve(multitenancy, headers.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_resolution() {
        assert_eq!(resolve(false, Some("ignored")).unwrap().as_str(), "single-tenant");
        assert!(matches!(resolve(true, None), Err(ApiError::NoOrgId)));
        assert!(matches!(resolve(true, Some("  ")), Err(ApiError::NoOrgId)));
        assert!(matches!(resolve(true, Some("a/b")), Err(ApiError::BadRequest(_))));
        assert_eq!(resolve(true, Some("team-a")).unwrap().as_str(), "team-a");
    }
}
