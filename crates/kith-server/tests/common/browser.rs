//! A browser without JavaScript for the web app's tests: a cookie jar, no automatic redirects,
//! the CSRF token of a page's form.

use std::collections::HashMap;

use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;

/// A browser without JavaScript: a cookie jar, no automatic redirects.
pub struct Browser {
    url: String,
    /// The HTTP client, for requests the helpers below do not make.
    pub client: reqwest::Client,
    /// The cookies kept, by name.
    pub cookies: HashMap<String, String>,
}

/// An answer: status, headers, body.
pub struct Page {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: String,
}

impl Page {
    /// Where a redirect points.
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).map(|value| value.to_str().unwrap())
    }

    /// A `Retry-After` in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get(RETRY_AFTER).map(|value| value.to_str().unwrap().parse().unwrap())
    }

    /// The CSRF token of the page's first form.
    pub fn csrf(&self) -> String {
        let marker = r#"name="_csrf" value=""#;
        let start = self.body.find(marker).unwrap_or_else(|| panic!("no form on {}", self.body)) + marker.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }
}

impl Browser {
    /// A browser with no cookies yet, pointed at `server`.
    pub fn new(server: &super::TestServer) -> Browser {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { url: server.url.clone(), client, cookies: HashMap::new() }
    }

    /// Sends a request with the cookies, keeping the ones it sets (each must be `HttpOnly`
    /// and `SameSite=Lax`).
    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let jar: Vec<String> = self.cookies.iter().map(|(name, value)| format!("{name}={value}")).collect();
        let response = request.header(COOKIE, jar.join("; ")).send().await.expect("request");
        for header in response.headers().get_all(SET_COOKIE) {
            let text = header.to_str().unwrap();
            assert!(text.contains("HttpOnly") && text.contains("SameSite=Lax"), "{text}");
            let (name, value) = text.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let (status, headers) = (response.status(), response.headers().clone());
        Page { status, headers, body: response.text().await.unwrap() }
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.url));
        self.send(request).await
    }

    /// Posts a form to `path`.
    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.client.post(format!("{}{path}", self.url)).form(form);
        self.send(request).await
    }

    /// Posts the sign-in form (fetching a fresh one first).
    pub async fn try_sign_in(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        self.post("/login", &[("_csrf", &form.csrf()), ("email", email), ("password", password)]).await
    }

    /// Signs in and asserts it worked.
    pub async fn sign_in(&mut self, email: &str, password: &str) {
        let page = self.try_sign_in(email, password).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert_eq!(page.location(), Some("/contacts"));
    }
}
