"""Operators and client ID metadata documents' clients (docs/client-id-metadata.md): such a
client is a row of `clients` like any, so `authserver clients show|update|delete` act on it by
its URL; a disabling survives the next fetch's upsert and a deletion is never undone by one."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from authserver.clients import Client
from authserver.db.accounts import SqlClientStore
from tests.test_cli_resources import cli_env, run

__all__ = ["cli_env"]  # the fixture, shared

NOW = 1_800_000_000


def fetched(database_url: str, client: Client) -> Client | None:
    """What a fetch of the document stores (metadata_documents/documents.named_client)."""

    async def save() -> Client | None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            return await SqlClientStore(engine).save_document(client, NOW)
        finally:
            await engine.dispose()

    return asyncio.run(save())


def test_operators_show_disable_and_delete_a_document_client(
    cli_env: str, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{cli_env}/oauth/client.json"
    document = Client(
        url, None, ("authorization_code", "refresh_token"), ("openid",),
        redirect_uris=("https://app.example/cb",), client_name="Notes",
        registration="document", consent=True, document_expires_at=NOW + 300,
    )  # fmt: skip
    assert fetched(database_url, document) is not None

    status, out, _ = run(capsys, "clients", "show", url, "--json")
    assert status == 0, out
    shown = json.loads(out)
    assert shown["client_id"] == url and shown["registration"] == "document"
    assert shown["public"] is True and shown["disabled"] is False

    status, out, err = run(capsys, "clients", "update", url, "--disable")
    assert status == 0, err
    again = fetched(database_url, document)  # the document fetched again, after
    assert again is not None and again.disabled

    status, out, err = run(capsys, "clients", "delete", url)
    assert status == 0, err
    assert fetched(database_url, document) is None  # deleted stays deleted
    status, _, _ = run(capsys, "clients", "show", url)
    assert status != 0
