"""The http-inbound connector: a real HTTP client against the REST API of a running node, on
the real broker. Tokens by role and category, problems naming the field, the OpenAPI
document, and a submission followed until it is signed, sent and stored by another member."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from connectors.http_inbound import HttpInboundConnector
from connectors.tokens import hash_token
from exchange.topics import MessageType
from nodes.config import load_config
from nodes.daemon import Node
from tests.connectors.tls import make_pki
from tests.helpers.federation import Federation, alert_data, sample_payloads

pytestmark = pytest.mark.integration

FAST = {"http": {"listen": ""}, "publisher": {"poll_interval_ms": 50}}
TOKENS = {
    "officer": "officer-token-0123456789",
    "bank": "bank-token-0123456789",
    "auditor": "auditor-token-012345",
}


def rest_connector() -> dict[str, Any]:
    return {
        "name": "rest",
        "plugin": "http-inbound",
        "options": {
            "listen": "127.0.0.1:0",
            "tokens": [
                {"name": "officer", "sha256": hash_token(TOKENS["officer"]), "roles": ["submit"]},
                {
                    "name": "bank",
                    "sha256": hash_token(TOKENS["bank"]),
                    "roles": ["report"],
                    "categories": ["IDENTITY_FRAUD"],
                },
                {"name": "auditor", "sha256": hash_token(TOKENS["auditor"]), "roles": ["read"]},
            ],
        },
    }


@dataclass
class Api:
    node: Node
    client: httpx.AsyncClient

    async def post(self, path: str, body: Any, who: str | None = "officer") -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKENS[who]}"} if who else {}
        return await self.client.post(path, json=body, headers=headers)

    async def status(self, outbox_id: int, who: str = "officer") -> dict[str, Any]:
        answer = await self.client.get(
            f"/v1/submissions/{outbox_id}", headers={"Authorization": f"Bearer {TOKENS[who]}"}
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
async def api(live_federation: Federation) -> AsyncIterator[Api]:
    node = Node(
        load_config(live_federation.config_path("FR"), **FAST, connectors=[rest_connector()])
    )
    await node.start()
    try:
        rest = node.connectors["rest"]
        assert isinstance(rest, HttpInboundConnector)
        await asyncio.wait_for(rest.listening.wait(), 30)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{rest.port}", timeout=30
        ) as client:
            yield Api(node, client)
    finally:
        await node.stop()


def problems(answer: httpx.Response) -> dict[str, str]:
    assert answer.headers["content-type"].startswith("application/problem+json")
    return {p["field"]: p["reason"] for p in answer.json()["problems"]}


async def test_a_posted_alert_is_signed_sent_and_stored_by_another_member(
    api: Api, live_federation: Federation
) -> None:
    """POST /v1/alerts answers 202 with the outbox id; its status goes to sent with the
    message id, under which another member stores it."""
    de = Node(load_config(live_federation.config_path("DE"), **FAST))
    await de.start()
    try:
        answer = await api.post(
            "/v1/alerts",
            {"payload": alert_data(title="via REST"), "handling": {"tlp": "GREEN", "code": "H0"}},
        )
        assert answer.status_code == 202, answer.text
        accepted = answer.json()
        assert accepted["status"] in ("pending", "signed", "sent")
        await api.node.wait_published(1)
        status = await api.status(accepted["outbox_id"])
        assert status["status"] == "sent"
        assert status["message_id"] == accepted["message_id"]
        await de.wait_stored(1)
        (record,) = await de.store.list_records(topic=de.topics[0])
        assert str(record.message_id) == status["message_id"]
        assert record.payload["title"] == "via REST"
    finally:
        await de.stop()


async def test_a_report_token_files_only_alerts_of_its_own_categories(api: Api) -> None:
    """A victim company's token (role report, IDENTITY_FRAUD) files an IDENTITY_FRAUD alert;
    another category, a blacklist change or a read-only token is refused 403 naming why."""
    own = await api.post("/v1/alerts", {"payload": alert_data(category="IDENTITY_FRAUD")}, "bank")
    assert own.status_code == 202, own.text
    other = await api.post(
        "/v1/alerts", {"payload": alert_data(category="FRAUDULENT_SALES")}, "bank"
    )
    assert other.status_code == 403
    assert "FRAUDULENT_SALES" in problems(other)["payload.category"]
    delta = sample_payloads()[MessageType.BLACKLIST_DELTA].model_dump(mode="json")
    assert (await api.post("/v1/blacklist", {"payload": delta}, "bank")).status_code == 403
    reader = await api.post("/v1/alerts", {"payload": alert_data()}, "auditor")
    assert reader.status_code == 403
    assert "authorization" in problems(reader)


async def test_no_token_or_an_unknown_one_is_refused_401(api: Api) -> None:
    """Without a bearer token, or with one not in the config, nothing is accepted."""
    bare = await api.post("/v1/alerts", {"payload": alert_data()}, None)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == "Bearer"
    forged = await api.client.post(
        "/v1/alerts",
        json={"payload": alert_data()},
        headers={"Authorization": "Bearer forged-token"},
    )
    assert forged.status_code == 401
    assert await api.node.store.outbox_depth() == 0


async def test_bad_input_is_answered_422_naming_each_field_and_reason(api: Api) -> None:
    """A payload missing its title and with a bad category, or a body that is no object,
    is answered 422 listing each field with its reason; nothing is queued."""
    payload = alert_data(category="NOT_A_CATEGORY")
    del payload["title"]
    bad = await api.post("/v1/alerts", {"payload": payload, "handling": {"tlp": "PURPLE"}})
    assert bad.status_code == 422
    found = problems(bad)
    assert "payload.title" in found
    assert "payload.category" in found
    assert "handling.tlp" in found
    shapeless = await api.post("/v1/alerts", {"payload": "an alert"})
    assert shapeless.status_code == 422
    assert "payload" in problems(shapeless)
    assert await api.node.store.outbox_depth() == 0


async def test_a_batch_is_queued_whole_or_refused_whole_naming_the_item(api: Api) -> None:
    """POST /v1/alerts/batch queues every alert in one go and names each message id; one bad
    item refuses the batch (422, items[i].field) and one outside a report token's categories
    forbids it (403): nothing of a refused batch is queued."""
    good = [{"payload": alert_data(title=f"batch {i}")} for i in range(3)]
    bad = [good[0], {"payload": {**alert_data(), "title": ""}}]
    refused = await api.post("/v1/alerts/batch", {"items": bad})
    assert refused.status_code == 422
    assert "items[1].payload.title" in problems(refused)
    theirs = [{"payload": alert_data(category="IDENTITY_FRAUD")}, good[1]]
    forbidden = await api.post("/v1/alerts/batch", {"items": theirs}, "bank")
    assert forbidden.status_code == 403
    assert "items[1].payload.category" in problems(forbidden)
    assert await api.node.store.outbox_depth() == 0
    answer = await api.post("/v1/alerts/batch", {"items": good})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()["accepted"]
    assert len(accepted) == 3
    await api.node.wait_published(3)
    for each in accepted:
        status = await api.status(each["outbox_id"])
        assert (status["status"], status["message_id"]) == ("sent", each["message_id"])


async def test_a_body_over_the_limit_is_refused_413_before_it_is_read_whole(api: Api) -> None:
    """A body past max_body_bytes (1 MiB by default), declared or chunked, is answered 413."""
    big = {"payload": alert_data(description="x" * (1 << 20))}
    assert (await api.post("/v1/alerts", big)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    chunked = await api.client.post(
        "/v1/alerts", content=chunks(), headers={"Authorization": f"Bearer {TOKENS['officer']}"}
    )
    assert chunked.status_code == 413
    assert "body" in problems(chunked)


async def test_blacklist_changes_and_pseudonym_queries_are_accepted_with_todays_models(
    api: Api,
) -> None:
    """A BlacklistDelta and a PseudonymQuery posted by a submit token are queued (202)."""
    payloads = sample_payloads(datetime.now().astimezone())
    for path, kind in (
        ("/v1/blacklist", MessageType.BLACKLIST_DELTA),
        ("/v1/pseudonym-queries", MessageType.PSEUDONYM_QUERY),
    ):
        answer = await api.post(path, {"payload": payloads[kind].model_dump(mode="json")})
        assert answer.status_code == 202, answer.text
        assert answer.json()["message_type"] == kind.value


async def test_the_openapi_document_is_served_valid_with_every_route_and_model(api: Api) -> None:
    """GET /openapi.json is a valid OpenAPI document naming the routes and the payload models."""
    answer = await api.client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    assert {
        "/v1/alerts",
        "/v1/alerts/batch",
        "/v1/blacklist",
        "/v1/pseudonym-queries",
        "/v1/submissions/{outbox_id}",
    } <= set(document["paths"])
    schemas = document["components"]["schemas"]
    for name in (
        "OffenceAlert",
        "BlacklistDelta",
        "PseudonymQuery",
        "AlertSubmission",
        "AlertBatch",
        "SubmissionOut",
        "ProblemReport",
    ):
        assert name in schemas
    alert_body = document["paths"]["/v1/alerts"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    assert alert_body["schema"]["$ref"] == "#/components/schemas/AlertSubmission"
    assert set(document["paths"]["/v1/alerts"]["post"]["responses"]) >= {"202", "401", "403", "422"}


async def test_with_mutual_tls_only_clients_with_a_certificate_of_the_ca_get_in(
    live_federation: Federation, tmp_path: Path
) -> None:
    """Configured with tls.client_ca, the API answers a client presenting a certificate
    that CA signed (and its token), and refuses the TLS handshake of one without."""
    pki = make_pki(tmp_path)
    spec = rest_connector()
    spec["options"]["tls"] = {
        "cert": str(pki["server"]),
        "key": str(pki["server_key"]),
        "client_ca": str(pki["ca"]),
    }
    node = Node(load_config(live_federation.config_path("FR"), **FAST, connectors=[spec]))
    await node.start()
    try:
        rest = node.connectors["rest"]
        assert isinstance(rest, HttpInboundConnector)
        await asyncio.wait_for(rest.listening.wait(), 30)
        url = f"https://127.0.0.1:{rest.port}/v1/alerts"
        body = {"payload": alert_data()}
        headers = {"Authorization": f"Bearer {TOKENS['officer']}"}
        with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with_cert.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
        async with httpx.AsyncClient(verify=with_cert, timeout=30) as client:
            answer = await client.post(url, json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        without = ssl.create_default_context(cafile=str(pki["ca"]))
        async with httpx.AsyncClient(verify=without, timeout=30) as client:
            with pytest.raises(httpx.TransportError):
                await client.post(url, json=body, headers=headers)
    finally:
        await node.stop()


async def test_a_taken_port_leaves_the_node_running_and_the_api_restarting(
    live_federation: Federation,
) -> None:
    """When its port is taken the REST API does not start; the node runs on, the
    supervisor restarts the connector with backoff and the node status names the cause."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spec = rest_connector()
        spec["options"]["listen"] = f"127.0.0.1:{taken.getsockname()[1]}"
        node = Node(load_config(live_federation.config_path("FR"), **FAST, connectors=[spec]))
        await node.start()
        try:
            await node.wait_until(lambda: node.supervisor.loops["inbound:rest"].restarts >= 2)
            state = (await node.store.get_status())["connector.rest.state"]
            assert "Address already in use" in state
            await node.submit("OffenceAlert", alert_data(), handling={"tlp": "GREEN"})
            await node.wait_published(1)
        finally:
            await node.stop()
        assert node.supervisor.fatal is None
