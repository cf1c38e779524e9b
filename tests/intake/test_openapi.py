"""Intake serves an OpenAPI document that matches its routes and error model."""

from __future__ import annotations

from aiohttp import web

from services.intake.app import create_app
from tests.conftest import intake_settings


async def test_openapi_document_is_served_and_names_every_route(http, intake) -> None:
    async with http.get(f"{intake}/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    app = create_app(intake_settings("unused."))
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if isinstance(r.resource, web.Resource) and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes - {("get", "/openapi.json")} == documented


async def test_every_documented_error_is_a_problem_document(http, intake) -> None:
    async with http.get(f"{intake}/openapi.json") as resp:
        doc = await resp.json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in response["content"], (method, path, status)


async def test_an_unknown_route_is_a_problem_404(http, intake) -> None:
    async with http.get(f"{intake}/nope") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["status"] == 404


async def test_a_wrong_method_is_a_problem_405(http, intake) -> None:
    async with http.get(f"{intake}/webhooks/shopify") as resp:
        assert resp.status == 405
        assert resp.content_type == "application/problem+json"
