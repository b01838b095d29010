"""GET /openapi.json: OpenAPI 3.1 of exactly the routes the server has, and a valid document."""

from __future__ import annotations

import httpx
from openapi_spec_validator import validate
from starlette.routing import Route

from authserver.http.openapi import OPERATIONS, SCHEMAS, document
from authserver.http.routes import routes
from tests.conftest import ISSUER


def served() -> set[tuple[str, str]]:
    found = set()
    for route in routes:
        assert isinstance(route, Route), route
        # Starlette adds HEAD to every GET route by itself: not an operation of ours.
        found |= {(method, route.path) for method in route.methods or () if method != "HEAD"}
    return found


def test_every_route_is_described_and_every_description_is_a_route() -> None:
    undescribed = sorted(served() - OPERATIONS.keys())
    assert not undescribed, (
        "describe each route in OPERATIONS in authserver/http/openapi.py, e.g. "
        + ", ".join(
            f'("{m}", "{p}"): {{"summary": "...", "tags": [...], "responses": {{...}}}}'
            for m, p in undescribed
        )
    )
    unrouted = sorted(OPERATIONS.keys() - served())
    assert not unrouted, (
        f"OPERATIONS in authserver/http/openapi.py describes routes http/routes.py lacks: "
        f"{unrouted}; remove them or add the routes"
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document(ISSUER))  # raises on an invalid document


def test_every_operation_has_a_summary_and_every_error_the_error_schema() -> None:
    error = {"$ref": "#/components/schemas/Error"}
    for (method, path), operation in OPERATIONS.items():
        where = f"{method} {path}"
        assert operation.get("summary"), where
        assert "503" in operation["responses"] and "default" in operation["responses"], where
        for status, response in operation["responses"].items():
            if status == "default" or int(status) >= 400:
                if "text/html" in response["content"]:
                    # API.md: the browser's pages answer errors as pages (sign-in and the
                    # admin console only).
                    assert {"sign-in", "console"} & set(operation["tags"]), where
                    continue
                assert response["content"]["application/json"]["schema"] == error, where
    assert set(SCHEMAS["Error"]["required"]) == {"error", "error_description"}


async def test_the_server_serves_its_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    served_document = response.json()
    assert served_document["openapi"] == "3.1.0"
    assert served_document["servers"] == [{"url": ISSUER}]
    assert served_document == document(ISSUER)
