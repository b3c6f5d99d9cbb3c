"""TLS settings really reach the client: a TLS handshake against the plaintext Milvus Lite
server fails (and says where), while the same settings without TLS connect."""

from __future__ import annotations

import pytest

from indexpair.errors import MilvusUnavailable
from indexpair.gateways.milvus import MilvusGateway
from indexpair.settings import Settings

pytestmark = pytest.mark.integration


def test_secure_channel_is_used_when_asked(stack_settings: Settings) -> None:
    with MilvusGateway(stack_settings.model_copy(update={"milvus_timeout_s": 5.0})) as plain:
        plain.client.list_collections()
    secure = stack_settings.model_copy(
        update={"milvus_secure": True, "milvus_server_name": "localhost", "milvus_timeout_s": 5.0}
    )
    with pytest.raises(MilvusUnavailable, match=f"Milvus at {stack_settings.milvus_uri}"):
        MilvusGateway(secure)
