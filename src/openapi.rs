//! The OpenAPI document both APIs serve: each crate's routes, with what every route can answer
//! besides its own successes added here in one place, each as an `application/problem+json`
//! body. The routes sit behind the same layers (edge, body limit, rate limits, token checks), so
//! the statuses those layers answer are documented for every route they guard.

use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::OpenApi;

use movies_command_api::CommandApiDoc;
use movies_query_api::QueryApiDoc;
use movies_web::{FieldProblem, Problem, PROBLEM_JSON};

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "movies", description = "A movie catalogue: CQRS and event-sourced. Reads are anonymous; \
        writes need an admin token from POST /api/v1/auth/token. Errors are application/problem+json."),
    components(schemas(Problem, FieldProblem)),
    modifiers(&BearerAuth)
)]
struct AppDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = AppDoc::openapi();
    doc.merge(CommandApiDoc::openapi());
    doc.merge(QueryApiDoc::openapi());
    for item in doc.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            document_errors(operation);
        }
    }
    doc
}

/// Adds the statuses the layers in front of every route answer, and a problem body to each
/// error response.
fn document_errors(operation: &mut Operation) {
    let mut statuses = vec![
        (400, "A parameter, header or body is malformed"),
        (401, "A bearer token was sent that does not verify"),
        (414, "The URL is longer than 8 KiB"),
        (429, "Too many requests from this client; see Retry-After"),
        (431, "The headers take more than 16 KiB"),
        (503, "A store this route needs is unavailable"),
    ];
    if operation.request_body.is_some() {
        statuses.extend([
            (413, "The body is larger than 64 KiB"),
            (415, "The body is not JSON, or is in an encoding the server does not decode"),
            (422, "The body is JSON of the wrong shape, or breaks a rule; `errors` lists the fields"),
        ]);
    }
    if operation.security.is_some() {
        statuses.push((403, "The token's account is not an admin's"));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in statuses {
        responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if status.starts_with('4') || status.starts_with('5') {
            if response.description.is_empty() {
                response.description = "See the problem's detail".into();
            }
            let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            response.content.entry(PROBLEM_JSON.to_owned()).or_insert(problem);
        }
    }
}
