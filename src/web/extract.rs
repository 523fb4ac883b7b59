//! Typed extractors for what a handler needs checked before it runs: a session of given
//! stages (cookie for pages, `Authorization: Bearer` for the API, which never accepts the
//! cookie and so needs no CSRF token), an admin session, and a CSRF-checked form. A handler
//! that takes one cannot forget its check; each rejection renders the right page or JSON.
//! The page language is `crate::i18n::Lang`, also an extractor.

use std::marker::PhantomData;

use axum::extract::rejection::{ExtensionRejection, FormRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;

use super::api_error::ApiError;
use super::responses::{clearing_session, login_page};
use super::{cookies, csrf};
use crate::app::state::AppState;
use crate::audit::Context;
use crate::auth::sessions::{Claims, Stage};
use crate::auth::{Caller, Via};
use crate::i18n::Lang;
use crate::views::{lang_of, message_page, Errors};

/// Where a handler's call comes from: a page form or the JSON API.
pub trait Channel: Send + Sync + 'static {
    const VIA: Via;
}

/// A page (form) request.
pub struct Page;
/// A JSON API request.
pub struct Api;

impl Channel for Page {
    const VIA: Via = Via::Web;
}
impl Channel for Api {
    const VIA: Via = Via::Api;
}

/// What every handler that calls an action starts from: the app, the request's audit
/// context (request id, client address) and the language, so each handler names its
/// channel once instead of building its `Caller` by hand.
pub struct Call<C> {
    pub state: AppState,
    pub context: Context,
    pub t: Lang,
    channel: PhantomData<C>,
}

impl<C: Channel> Call<C> {
    /// Who asks the action, for its audit rows and its texts.
    pub fn caller(&self) -> Caller<'_> {
        Caller::new(&self.context, C::VIA, self.t)
    }
}

impl<C: Channel> FromRequestParts<AppState> for Call<C> {
    type Rejection = ExtensionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, ExtensionRejection> {
        let Extension(context) =
            <Extension<Context> as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await?;
        Ok(Self {
            state: state.clone(),
            context,
            t: lang_of(&parts.headers),
            channel: PhantomData,
        })
    }
}

/// The session stages a route accepts, and what a page says when the session is gone.
pub trait Stages: Send + Sync + 'static {
    const STAGES: &'static [Stage];
    /// The notice on the sign-in page after a form of this kind is sent with no valid
    /// session. Written as a `tr` call with its literal key so the catalogue check sees it.
    fn ended(t: Lang) -> &'static str {
        t.tr("common.session_ended")
    }
}

/// A signed-in user with every step done.
pub struct Full;
/// A sign-in waiting for its code.
pub struct Pending;
/// The two-step settings: a full session, or a forced enrollment.
pub struct Enrolling;
/// Any stage (the index, sign-in and sign-out pages look where to send the browser).
pub struct AnyStage;

impl Stages for Full {
    const STAGES: &'static [Stage] = &[Stage::Authenticated];
}
impl Stages for Pending {
    const STAGES: &'static [Stage] = &[Stage::TotpPending, Stage::NasOtpPending];
    fn ended(t: Lang) -> &'static str {
        t.tr("totp.sign_in_again")
    }
}
impl Stages for Enrolling {
    const STAGES: &'static [Stage] = &[Stage::Authenticated, Stage::TotpEnrollment];
    fn ended(t: Lang) -> &'static str {
        t.tr("totp.sign_in_again")
    }
}
impl Stages for AnyStage {
    const STAGES: &'static [Stage] = &[
        Stage::Authenticated,
        Stage::TotpPending,
        Stage::NasOtpPending,
        Stage::TotpEnrollment,
    ];
}

/// The page session of a request, from the session cookie, in one of `S`'s stages.
pub struct CookieSession<S> {
    pub claims: Claims,
    stages: PhantomData<S>,
}

async fn cookie_claims(state: &AppState, headers: &HeaderMap, stages: &[Stage]) -> Option<Claims> {
    let token = cookies::read(headers, state.cookies.session)?;
    state.portal.sessions.check_any(token, stages).await.ok()
}

/// A page opened without a session goes to the sign-in page; a form sent without one gets
/// the sign-in page with a notice (its input is not kept) and loses the stale cookie.
fn no_session<S: Stages>(state: &AppState, parts: &Parts) -> Response {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return Redirect::to("/login").into_response();
    }
    let t = lang_of(&parts.headers);
    let page = login_page(
        state,
        &parts.headers,
        StatusCode::UNAUTHORIZED,
        "",
        Errors::none(),
        Some(S::ended(t)),
    );
    clearing_session(state, page)
}

impl<S: Stages> FromRequestParts<AppState> for CookieSession<S> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match cookie_claims(state, &parts.headers, S::STAGES).await {
            Some(claims) => Ok(Self {
                claims,
                stages: PhantomData,
            }),
            None => Err(no_session::<S>(state, parts)),
        }
    }
}

impl<S: Stages> OptionalFromRequestParts<AppState> for CookieSession<S> {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        let claims = cookie_claims(state, &parts.headers, S::STAGES).await;
        Ok(claims.map(|claims| Self {
            claims,
            stages: PhantomData,
        }))
    }
}

/// A full page session of an admin (`admin.groups` / `admin.users` at sign-in). Others get
/// 403, and no session at all goes to the sign-in page.
pub struct AdminCookie(pub Claims);

impl FromRequestParts<AppState> for AdminCookie {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session =
            <CookieSession<Full> as FromRequestParts<AppState>>::from_request_parts(parts, state)
                .await?;
        if session.claims.admin {
            return Ok(Self(session.claims));
        }
        let t = lang_of(&parts.headers);
        Err(message_page(
            t,
            StatusCode::FORBIDDEN,
            t.tr("admin.forbidden_title"),
            t.tr("admin.forbidden_text"),
            "/password",
            t.tr("common.back"),
        ))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The API session of a request, from `Authorization: Bearer`, in one of `S`'s stages.
/// Checked before the body is read, so an anonymous caller learns nothing about it.
pub struct BearerSession<S> {
    pub claims: Claims,
    stages: PhantomData<S>,
}

impl<S: Stages> FromRequestParts<AppState> for BearerSession<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthenticated)?;
        let claims = state
            .portal
            .sessions
            .check_any(token, S::STAGES)
            .await
            .map_err(|_| ApiError::unauthenticated())?;
        Ok(Self {
            claims,
            stages: PhantomData,
        })
    }
}

/// A full API session of an admin.
pub struct AdminBearer(pub Claims);

impl FromRequestParts<AppState> for AdminBearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let session = BearerSession::<Full>::from_request_parts(parts, state).await?;
        if !session.claims.admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "The audit log is for NAS administrators only.",
            ));
        }
        Ok(Self(session.claims))
    }
}

/// A form whose CSRF token (`csrf` field) matches the browser's CSRF cookie.
pub trait CsrfProtected: DeserializeOwned + Send {
    /// The page a refused form links back to, and the translation key of its title.
    const PAGE: &'static str;
    const TITLE: &'static str;
    fn csrf_token(&self) -> Option<&str>;
}

/// Declares a page form: its text fields (each defaulting to empty, so a missing field is
/// judged by the action, not refused by the parser), the `csrf` field, and the page a
/// refused form links back to.
macro_rules! csrf_form {
    ($(#[$meta:meta])* $name:ident { $($field:ident),* } back to $page:literal titled $title:literal) => {
        $(#[$meta])*
        #[derive(serde::Deserialize)]
        pub struct $name {
            #[serde(default)]
            csrf: Option<String>,
            $(
                #[serde(default)]
                $field: String,
            )*
        }

        impl $crate::web::extract::CsrfProtected for $name {
            const PAGE: &'static str = $page;
            const TITLE: &'static str = $title;
            fn csrf_token(&self) -> Option<&str> {
                self.csrf.as_deref()
            }
        }
    };
}
pub(crate) use csrf_form;

/// The form, parsed and CSRF-checked. An unreadable form answers 400, a missing or wrong
/// token 403, each with a page that links back to the form; nothing behind it runs.
pub struct CsrfForm<T>(pub T);

impl<T: CsrfProtected> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let t = lang_of(&headers);
        let refuse = |status, text: &str| {
            let back = if T::PAGE == "/login" {
                t.tr("common.back_to_sign_in")
            } else {
                t.tr("common.back")
            };
            message_page(t, status, t.tr(T::TITLE), text, T::PAGE, back)
        };
        let form: Result<Form<T>, FormRejection> = Form::from_request(request, state).await;
        let Ok(Form(form)) = form else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                t.tr("common.form_unreadable"),
            ));
        };
        if !csrf::verify(state, &headers, form.csrf_token()) {
            return Err(refuse(StatusCode::FORBIDDEN, t.tr("common.csrf_refused")));
        }
        Ok(Self(form))
    }
}

/// The header that carries the CSRF token of a script's request (the page's form token).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A script's request from a page: its `X-CSRF-Token` header matches the CSRF cookie.
pub struct CsrfHeader;

impl FromRequestParts<AppState> for CsrfHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if csrf::verify(state, &parts.headers, token) {
            Ok(Self)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_refused",
                "Missing or wrong X-CSRF-Token header.",
            ))
        }
    }
}
