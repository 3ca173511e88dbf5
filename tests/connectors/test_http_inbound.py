"""The http-inbound connector: a real HTTP client against the REST API of a running node, on
the real broker. Tokens by role and category, problems naming the field, the OpenAPI
document, and a submission followed until it is signed, sent and stored by another member."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from connectors.http_inbound import HttpInboundConnector
from connectors.tokens import hash_token
from nodes.blacklist.db import blacklist_db
from nodes.blacklist.state import versions
from nodes.daemon import Node
from nodes.pseudonyms.cli import import_file
from tests.connectors.tls import make_pki
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node
from tests.node.helpers import wait_for
from tests.pseudonyms import test_flow as pseudonym_flow

pytestmark = pytest.mark.integration

SYNC_FAST = {"sync_interval_s": 0.2}
#: A pseudonym query as a police system posts it (full-width @, upper case: DE's handle).
QUERY = {
    "platform": "Telegram",
    "handle": "\uff20DARK_SELLER42",
    "purpose": "investigation FR-2026-33",
    "legal_basis": "CPP art. 230-45",
    "category": "ILLICIT_DRUG_TRADE",
    "justification": "vendor seen on a drug market channel",
}
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
    node = make_node(live_federation, "FR", connectors=[rest_connector()])
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
    de = make_node(live_federation, "DE")
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
    another category or a read-only token is refused 403 naming why."""
    own = await api.post("/v1/alerts", {"payload": alert_data(category="IDENTITY_FRAUD")}, "bank")
    assert own.status_code == 202, own.text
    other = await api.post(
        "/v1/alerts", {"payload": alert_data(category="FRAUDULENT_SALES")}, "bank"
    )
    assert other.status_code == 403
    assert "FRAUDULENT_SALES" in problems(other)["payload.category"]
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
        "/v1/pseudonym-queries/{query_id}",
    } <= set(document["paths"])
    schemas = document["components"]["schemas"]
    for name in (
        "OffenceAlert",
        "AlertSubmission",
        "AlertBatch",
        "SubmissionOut",
        "ProblemReport",
        "BlacklistChangeOut",
        "PseudonymQueryOut",
        "PseudonymAnswersOut",
    ):
        assert name in schemas
    for path, model in (
        ("/v1/alerts", "AlertSubmission"),
        ("/v1/blacklist", "BlacklistChangeIn"),
        ("/v1/pseudonym-queries", "PseudonymQueryIn"),
    ):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"] == f"#/components/schemas/{model}"
    change = schemas["BlacklistChangeIn"]
    assert set(change["required"]) == {"list", "reason"}
    assert change["properties"]["list"]["description"]
    entry = schemas["BlacklistEntryIn"]
    assert set(entry["required"]) == {"kind", "value", "category"}
    assert {"reason", "algorithm", "expires_at"} <= set(entry["properties"])
    query = schemas["PseudonymQueryIn"]
    assert set(query["required"]) == set(QUERY)  # all but recipients
    assert all(p.get("description") for p in query["properties"].values())
    # no route takes a raw delta or query any more
    assert "BlacklistDelta" not in schemas
    assert "PseudonymQuery" not in schemas
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
    node = make_node(live_federation, "FR", connectors=[spec])
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
        node = make_node(live_federation, "FR", connectors=[spec])
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


CSAM = "CHILD_SEXUAL_ABUSE_MATERIAL"


def change(list_name: str = "csam", **kw: Any) -> dict[str, Any]:
    entry = {"kind": "DOMAIN", "value": "Bad-Shop.Example.", "category": CSAM, "reason": "shop"}
    return {"list": list_name, "add": [entry], "reason": "found by the hotline", **kw}


async def test_a_blacklist_change_posted_to_fr_reaches_de_as_version_1_then_2(
    api: Api, live_federation: Federation
) -> None:
    """POST /v1/blacklist publishes the next version of FR's own list (normalized entries,
    versions picked by the node): DE applies fr.csam version 1, then 2 with a removal."""
    de = make_node(live_federation, "DE", blacklist=SYNC_FAST)
    await de.start()
    db = blacklist_db(de.store, de.config.store.url)
    try:
        first = await api.post("/v1/blacklist", change())
        assert first.status_code == 202, first.text
        assert (first.json()["list_id"], first.json()["version"]) == ("fr.csam", 1)
        url = {"kind": "URL", "value": "HTTP://Bad-Shop.Example:80", "category": CSAM}
        second = await api.post(
            "/v1/blacklist",
            change(
                "fr.csam",
                add=[url],
                remove=[{"kind": "DOMAIN", "value": "BAD-SHOP.example"}],
                reason="moved to a URL",
            ),
        )
        assert second.status_code == 202, second.text
        assert second.json()["version"] == 2
        status = await api.status(second.json()["outbox_id"])
        assert status["message_id"] == second.json()["message_id"]

        async def at_two() -> bool:
            return (await versions(db)).get("fr.csam") == 2

        await wait_for(at_two, within_s=60, what="DE holds fr.csam version 2")
        async with db.transaction() as tx:
            rows = await tx.fetch("SELECT kind, value FROM bl_entries WHERE list_id = 'fr.csam'")
        assert [tuple(r) for r in rows] == [("URL", "http://bad-shop.example/")]
    finally:
        await db.close()
        await de.stop()


async def test_a_bad_blacklist_change_is_refused_422_naming_each_problem_and_nothing_is_sent(
    api: Api,
) -> None:
    """Bad entries (value, kind, category, expiry), a missing reason, a missing value and
    another member's list are each named; nothing is queued, and the next good change is
    still version 1."""
    bad = change(
        add=[
            {"kind": "DOMAIN", "value": "good.example", "category": CSAM},
            {"kind": "DOMAIN", "value": "not a domain", "category": CSAM},
            {"kind": "SHAPE", "value": "x.example", "category": CSAM},
            {"kind": "IP", "value": "192.0.2.1", "category": "NOPE"},
            {"kind": "HASH", "value": "abc", "algorithm": "SHA256", "category": CSAM},
            {
                "kind": "IP",
                "value": "192.0.2.2",
                "category": CSAM,
                "expires_at": "2001-01-01T00:00:00+00:00",
            },
        ],
        reason=" ",
    )
    refused = await api.post("/v1/blacklist", bad)
    assert refused.status_code == 422
    assert {
        "add[1].value",
        "add[2].kind",
        "add[3].category",
        "add[4].value",
        "add[5].expires_at",
        "reason",
    } <= set(problems(refused))
    assert "add[0].value" not in problems(refused)
    shapeless = await api.post("/v1/blacklist", change(add=[{"kind": "DOMAIN"}]))
    assert shapeless.status_code == 422
    assert "add[0].value" in problems(shapeless)
    theirs = await api.post("/v1/blacklist", change("de.csam"))
    assert theirs.status_code == 422
    assert "owned by DE" in problems(theirs)["list"]
    assert await api.node.store.outbox_depth() == 0
    good = await api.post("/v1/blacklist", change())
    assert (good.status_code, good.json().get("version")) == (202, 1), good.text


async def test_a_report_or_read_token_may_neither_change_a_blacklist_nor_ask(api: Api) -> None:
    """Only a submit token may change a blacklist or ask about a pseudonym (403 otherwise);
    a report token may not read the answers either."""
    query = {**QUERY, "category": "IDENTITY_FRAUD"}
    for who in ("bank", "auditor"):
        for path, body in (("/v1/blacklist", change()), ("/v1/pseudonym-queries", query)):
            answer = await api.post(path, body, who)
            assert answer.status_code == 403, (who, path, answer.text)
            assert "authorization" in problems(answer)
    bank = {"Authorization": f"Bearer {TOKENS['bank']}"}
    listing = await api.client.get("/v1/pseudonym-queries/some-id", headers=bank)
    assert listing.status_code == 403
    assert await api.node.store.outbox_depth() == 0


async def test_a_pseudonym_query_posted_to_fr_gets_des_hit_and_the_handle_never_travels(
    api: Api,
    live_federation: Federation,
    kafka_bootstrap: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FR's REST API blinds the handle it is given: DE answers HIT with its case reference
    and contact unit (GET /v1/pseudonym-queries/{id}); the handle, as posted or normalized,
    is in no raw record on any topic, nor in FR's outbox, audit log or log output. A bad
    handle is refused 422 naming it, without echoing it."""
    csv_path = tmp_path / "patrol.csv"
    csv_path.write_text(pseudonym_flow.CSV, encoding="utf-8")
    de = pseudonym_flow.make_node(live_federation, "DE")
    await de.start()
    try:
        kept, _ = await import_file(
            pseudonym_flow.service(de), de.store, csv_path, actor="test", now=datetime.now(UTC)
        )
        assert kept == 2
        bad = await api.post("/v1/pseudonym-queries", {**QUERY, "handle": "two words"})
        assert bad.status_code == 422
        assert "handle" in problems(bad)
        assert "two words" not in bad.text
        answer = await api.post("/v1/pseudonym-queries", {**QUERY, "recipients": ["DE"]})
        assert answer.status_code == 202, answer.text
        query_id = answer.json()["query_id"]
        officer = {"Authorization": f"Bearer {TOKENS['officer']}"}

        async def answered() -> bool:
            got = await api.client.get(f"/v1/pseudonym-queries/{query_id}", headers=officer)
            return bool(got.json()["answers"])

        await wait_for(answered, within_s=60, what="FR stored an answer")
        got = await api.client.get(f"/v1/pseudonym-queries/{query_id}", headers=officer)
        (hit,) = got.json()["answers"]
        assert (hit["responder"], hit["outcome"], hit["hit"]) == ("DE", "HIT", True)
        assert (hit["case_reference"], hit["contact_unit"]) == (
            "DE-BKA-2026-117",
            "BKA SO41 cyber patrol",
        )
        item = await api.node.store.outbox_item(answer.json()["outbox_id"])
        assert item is not None
        kept_text = json.dumps(item.payload) + "".join(
            json.dumps([e.event.justification, e.event.subject, dict(e.event.details)])
            for e in await api.node.store.audit_entries()
        )
    finally:
        await de.stop()
    raw = await pseudonym_flow.raw_records(live_federation, kafka_bootstrap)
    blob = b"\n".join(k + b"\n" + v for _t, k, v, _ts in raw)
    forms = pseudonym_flow.spellings(QUERY["handle"]) | pseudonym_flow.spellings("dark_seller42")
    for form in forms:
        assert form not in blob, f"{form!r} travelled on the bus"
    printed = capfd.readouterr()
    logged = printed.out + printed.err + caplog.text
    assert "pseudonym query sent" in logged  # the logs were captured
    for text in (QUERY["handle"], "dark_seller42", "DARK_SELLER42"):
        assert text not in kept_text
        assert text not in logged
