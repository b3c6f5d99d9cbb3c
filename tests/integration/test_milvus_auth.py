"""The standalone Milvus backend of the local stack runs with authentication on: its
generated root password is kept owner-only, and a client without it is refused."""

from __future__ import annotations

import stat

import pytest
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from indexpair.errors import MilvusUnavailable
from indexpair.gateways.milvus import MilvusGateway, auth_token
from indexpair.settings import Settings

pytestmark = pytest.mark.integration


def test_password_is_generated_and_owner_only(standalone_milvus: Settings) -> None:
    path = standalone_milvus.milvus_password_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    password = path.read_text().strip()
    assert len(password) >= 24 and password != "Milvus"
    assert auth_token(standalone_milvus) == f"root:{password}"
    config = (path.parent / "configs" / "milvus.yaml").read_text()
    assert "authorizationEnabled: true" in config


@pytest.mark.parametrize("token", ["", "root:Milvus", "root:not-the-password"])
def test_a_client_without_the_password_is_refused(standalone_milvus: Settings, token: str) -> None:
    with pytest.raises(MilvusException):
        MilvusClient(uri=standalone_milvus.milvus_uri, token=token, timeout=5, dedicated=True)
    # ... while the generated password works at the same moment: the refusal is the auth.
    client = MilvusClient(
        uri=standalone_milvus.milvus_uri,
        token=auth_token(standalone_milvus),
        timeout=5,
        dedicated=True,
    )
    try:
        assert isinstance(client.list_collections(), list)
    finally:
        client.close()


def test_the_gateway_uses_the_password_and_fails_clearly_without(
    standalone_milvus: Settings,
) -> None:
    with MilvusGateway(standalone_milvus) as milvus:
        assert milvus.server_kind() == "standalone"
    elsewhere = standalone_milvus.model_copy(
        update={"milvus_backend": "lite", "milvus_timeout_s": 5}
    )
    with pytest.raises(MilvusUnavailable, match=standalone_milvus.milvus_uri):
        MilvusGateway(elsewhere)  # refused within its timeout
