//! `use bulwark::http;` hides the `http` crate in its scope (the facade's
//! module takes the crate's name). `bulwark::http` therefore carries the
//! `http` crate's names; this file stops compiling if one of the paths
//! users write after that import goes missing, or means another type than
//! the `http` crate's (each `same` call needs both sides to be one type).

/// Both arguments have one type: a compile-time check that two paths name
/// the same type.
fn same<T>(_: &T, _: &T) {}

mod after_use_bulwark_http {
    use super::same;
    use bulwark::http;
    use bulwark::http::ClientStack;
    use std::convert::Infallible;
    use tower::{ServiceBuilder, ServiceExt};

    #[test]
    fn the_common_paths_are_the_http_crates() {
        let req: http::Request<()> = http::Request::builder()
            .method(http::Method::PUT)
            .uri("http://api.local/items/1")
            .version(http::Version::HTTP_11)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::HeaderName::from_static("x-id"),
                http::HeaderValue::from_static("7"),
            )
            .body(())
            .unwrap();
        same(&req, &::http::Request::new(()));
        same(req.method(), &::http::Method::GET);
        same(req.uri(), &::http::Uri::from_static("/"));
        same(req.headers(), &::http::HeaderMap::new());
        same(req.extensions(), &::http::Extensions::new());
        assert_eq!(
            req.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );

        let (parts, ()): (http::request::Parts, ()) = req.into_parts();
        same(&parts, &::http::Request::new(()).into_parts().0);
        let authority: &http::uri::Authority = parts.uri.authority().unwrap();
        assert_eq!(authority.host(), "api.local");
        same(&http::method::Method::POST, &::http::Method::POST);
        same(&http::version::Version::HTTP_2, &::http::Version::HTTP_2);

        let res: http::Response<()> = http::response::Builder::new()
            .status(http::StatusCode::CREATED)
            .body(())
            .unwrap();
        let (parts, ()): (http::response::Parts, ()) = res.into_parts();
        same(&parts, &::http::Response::new(()).into_parts().0);
        same(&parts.status, &http::status::StatusCode::CREATED);
        assert_eq!(parts.status, ::http::StatusCode::CREATED);

        let bad: Result<http::StatusCode, http::status::InvalidStatusCode> =
            http::StatusCode::from_u16(1000);
        assert!(bad.is_err());
        let err: http::Error = http::Request::builder()
            .uri("not a uri")
            .body(())
            .unwrap_err();
        let result: http::Result<()> = Err(err);
        same(&result, &::http::Result::<()>::Ok(()));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_stack_takes_and_answers_them() {
        let svc = ServiceBuilder::new()
            .layer(ClientStack::new().build().unwrap())
            .service_fn(|req: http::Request<String>| async move {
                let status = if req.method() == http::Method::GET {
                    http::StatusCode::OK
                } else {
                    http::StatusCode::METHOD_NOT_ALLOWED
                };
                let res = http::Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap();
                Ok::<_, Infallible>(res)
            });
        let req = http::Request::get("http://api.local/")
            .body(String::new())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
    }
}
