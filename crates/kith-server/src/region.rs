//! Regions: the region a node serves, the public address of every region, and the refusal of
//! keys that belong to another one.
//!
//! Each region has its own nodes and its own database, so a node cannot look up another
//! region's keys. A key therefore says its region in its text (`kith_wk_eu_…`, see
//! [`key_region`]): a node recognises a key of another region without any database, before it
//! reads the request's body, and answers `421 Misdirected Request` with the address of the
//! region the key belongs to. Keys made before regions (`kith_wk_…` with no region) belong to
//! the region of the node whose database holds them.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use kith_store::Workspace;

use crate::error::ApiError;

/// The code of the refusal.
pub const WRONG_REGION: &str = "wrong_region";

/// What a node knows of regions.
#[derive(Debug, Clone, Default)]
pub struct Regions {
    /// The region this node serves; `None`: no region checks (a node of before regions).
    pub own: Option<String>,
    /// The public URL of each region, e.g. `eu` → `https://eu.kith.example.com`.
    pub endpoints: BTreeMap<String, String>,
}

/// Whether `name` can be a region: 1 to 16 lowercase ASCII letters, digits or `-`, starting
/// with a letter. `_` is excluded because it separates the parts of a key.
pub fn is_region_name(name: &str) -> bool {
    (1..=16).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The region a key's text names: `kith_wk_eu_<random>` → `eu`; `None` for a key without one
/// (`kith_wk_<random>`: the random part never holds `_`) or a text that is no kith key.
pub fn key_region(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("kith_wk_").or_else(|| text.strip_prefix("kith_sk_"))?;
    let (region, random) = rest.split_once('_')?;
    (is_region_name(region) && !random.is_empty()).then_some(region)
}

impl Regions {
    /// Checks the names and addresses; `Err` says what is wrong, for the operator.
    pub fn new(own: Option<String>, endpoints: BTreeMap<String, String>) -> Result<Regions, String> {
        if let Some(own) = &own {
            if !is_region_name(own) {
                return Err(format!(
                    "region {own:?} is not a region name: 1 to 16 lowercase letters, digits or '-', e.g. eu"
                ));
            }
        }
        for (name, url) in &endpoints {
            if !is_region_name(name) {
                return Err(format!(
                    "region_endpoints names {name:?}, which is not a region name: 1 to 16 lowercase letters, \
                     digits or '-'"
                ));
            }
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!(
                    "the endpoint of region {name} is {url:?}; give its public address, e.g. https://{name}.kith.example.com"
                ));
            }
        }
        Ok(Regions { own, endpoints })
    }

    /// The region of a workspace: its own, else (made before regions) this node's.
    pub fn of_workspace(&self, workspace: &Workspace) -> Option<String> {
        workspace.region.clone().or_else(|| self.own.clone())
    }

    /// Refuses a key of another region with 421 and that region's address. A key without a
    /// region, and every key on a node without one, passes to the usual lookup.
    pub fn check_key(&self, text: &str) -> Result<(), ApiError> {
        let (Some(own), Some(region)) = (&self.own, key_region(text)) else {
            return Ok(());
        };
        if region == own {
            return Ok(());
        }
        let endpoint = self.endpoints.get(region).map(|url| url.trim_end_matches('/').to_owned());
        let message = match &endpoint {
            Some(url) => format!(
                "this key belongs to region {region} and this kith serves region {own}; send it to {url} \
                 (nothing of this request was read or stored)"
            ),
            None => format!(
                "this key belongs to region {region} and this kith serves region {own}, which knows no \
                 address for {region}; send it to region {region}'s kith (nothing of this request was read or stored)"
            ),
        };
        let mut error = ApiError::new(StatusCode::MISDIRECTED_REQUEST, WRONG_REGION, message);
        error.body.endpoint = endpoint;
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Regions {
        let endpoints = [("us", "https://us.example.com/"), ("eu", "https://eu.example.com")]
            .map(|(name, url)| (name.to_owned(), url.to_owned()));
        Regions::new(Some("us".into()), endpoints.into_iter().collect()).unwrap()
    }

    #[test]
    fn keys_name_their_region_or_none() {
        assert_eq!(key_region("kith_wk_eu_Abc123"), Some("eu"));
        assert_eq!(key_region("kith_sk_us-east_x"), Some("us-east"));
        assert_eq!(key_region("kith_wk_Abc123"), None, "a key of before regions");
        assert_eq!(key_region("kith_wk_EU_Abc"), None, "region names are lowercase");
        assert_eq!(key_region("kith_wk_eu_"), None);
        assert_eq!(key_region("other_eu_x"), None);
    }

    #[test]
    fn another_regions_key_is_misdirected_with_its_endpoint() {
        let regions = regions();
        let refused = regions.check_key("kith_wk_eu_Abc").unwrap_err();
        assert_eq!(refused.status, StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(refused.body.code, WRONG_REGION);
        assert_eq!(refused.body.endpoint.as_deref(), Some("https://eu.example.com"));
        let unknown = regions.check_key("kith_sk_ap_Abc").unwrap_err();
        assert_eq!(unknown.body.endpoint, None);
        assert!(unknown.body.message.contains("region ap"));
        assert!(regions.check_key("kith_wk_us_Abc").is_ok());
        assert!(regions.check_key("kith_wk_Abc").is_ok(), "old keys are the node's region");
        assert!(Regions::default().check_key("kith_wk_eu_Abc").is_ok(), "no region: no checks");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Regions::new(Some("EU".into()), BTreeMap::new()).is_err());
        assert!(Regions::new(Some("e_u".into()), BTreeMap::new()).is_err());
        let bad_url = [("eu".to_owned(), "eu.example.com".to_owned())].into_iter().collect();
        assert!(Regions::new(None, bad_url).is_err());
    }
}
