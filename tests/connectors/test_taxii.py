"""The TAXII 2.1 server in the node, read and written with ``taxii2-client`` against running
nodes on the real broker: tokens see only what their TLP allows, pages and ``added_after``
return every object exactly once, and a TAXII POST becomes signed alerts on the bus."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import stix2
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from connectors.taxii import TaxiiConnector
from connectors.taxii.app import MEDIA_TYPE
from connectors.tokens import hash_token
from nodes.daemon import Node
from tests.connectors.helpers import assert_valid_stix
from tests.helpers.broker import free_port
from tests.helpers.federation import Federation, alert_data
from tests.helpers.nodes import make_node, retract

TOKENS = {
    "green-reader": {"roles": ["read"], "max_tlp": "GREEN", "max_handling_code": "H1"},
    "amber-reader": {"roles": ["read"], "max_tlp": "AMBER", "max_handling_code": "H1"},
    "writer": {"roles": ["submit", "read"], "max_tlp": "AMBER", "max_handling_code": "H1"},
    "bank": {"roles": ["report"], "categories": ["IDENTITY_FRAUD"]},
}


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


@dataclass
class Taxii:
    """A running DE node serving TAXII, and FR beside it to send alerts."""

    fr: Node
    de: Node
    connector: TaxiiConnector
    url: str

    async def collection(self, token: str) -> Collection:
        """The alerts collection as ``token`` sees it (the client blocks: run in a thread,
        the server runs in this loop)."""

        def find() -> Collection:
            [alerts] = ApiRoot(f"{self.url}/ncp/", auth=Bearer(token)).collections
            return alerts

        return await asyncio.to_thread(find)

    async def wait_indexed(self, count: int) -> None:
        de = self.de
        await de.wait_until(lambda: de.metrics.disclosed.value("taxii") >= count, 30)


@pytest.fixture
async def taxii(live_federation: Federation) -> AsyncIterator[Taxii]:
    fed = live_federation
    port = free_port()
    tokens = [{"name": name, "sha256": hash_token(name), **g} for name, g in TOKENS.items()]
    spec = {
        "name": "taxii",
        "plugin": "taxii",
        "topics": ["alerts"],
        "options": {"listen": f"127.0.0.1:{port}", "index": "taxii.db", "tokens": tokens},
    }
    fr = make_node(fed, "FR")
    de = make_node(fed, "DE", connectors=[spec])
    await fr.start()
    await de.start()
    try:
        assert de.dispatcher is not None
        connector = de.dispatcher.outbound[0].connector
        assert isinstance(connector, TaxiiConnector)
        await asyncio.wait_for(connector.started.wait(), 20)
        yield Taxii(fr, de, connector, f"http://127.0.0.1:{port}")
    finally:
        await de.stop()
        await fr.stop()


async def send(node: Node, count: int, tlp: str, title: str = "alert") -> None:
    for i in range(count):
        data = alert_data(f"{title} {tlp} {i}", observed_at=datetime.now(UTC))
        await node.submit("OffenceAlert", data, handling={"tlp": tlp, "code": "H1"})


def tlp_of(obj: dict[str, Any]) -> set[str]:
    from connectors.stix import TLP2_IDS

    back = {v: k for k, v in TLP2_IDS.items()}
    return {back[r] for r in obj.get("object_marking_refs", ()) if r in back}


def read_all(collection: Collection, per_request: int, **filters: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in as_pages(collection.get_objects, per_request=per_request, **filters):
        out.extend(page.get("objects", []))
    return out


@pytest.mark.integration
async def test_a_green_token_never_sees_an_amber_object(taxii: Taxii) -> None:
    """Two GREEN and two AMBER alerts from FR: the GREEN-only token reads the GREEN ones (and
    the public identity and markings) and nothing marked AMBER, not even by its id; the AMBER
    token reads all four. Every object read is valid STIX."""
    await send(taxii.fr, 2, "GREEN")
    await send(taxii.fr, 2, "AMBER")
    await taxii.wait_indexed(4)

    def discover() -> list[str]:
        server = Server(f"{taxii.url}/taxii2/", auth=Bearer("green-reader"))
        assert server.default is not None
        return [c.title for c in server.default.collections]

    assert await asyncio.to_thread(discover) == ["alerts"]

    green = await asyncio.to_thread(read_all, await taxii.collection("green-reader"), 100)
    amber = await asyncio.to_thread(read_all, await taxii.collection("amber-reader"), 100)
    assert_valid_stix(
        {"type": "bundle", "id": f"bundle--{'0' * 8}-0000-4000-8000-{'0' * 12}", "objects": amber}
    )
    reports = lambda objs: sorted(o["name"] for o in objs if o["type"] == "report")  # noqa: E731
    assert reports(green) == ["alert GREEN 0", "alert GREEN 1"]
    assert reports(amber) == ["alert AMBER 0", "alert AMBER 1", "alert GREEN 0", "alert GREEN 1"]
    assert all("AMBER" not in tlp_of(o) for o in green)
    hidden = next(o["id"] for o in amber if o["type"] == "indicator" and "AMBER" in tlp_of(o))
    with pytest.raises(requests.HTTPError) as refused:
        await asyncio.to_thread((await taxii.collection("green-reader")).get_object, hidden)
    assert refused.value.response.status_code == 404


@pytest.mark.integration
async def test_pages_and_added_after_return_every_object_exactly_once(taxii: Taxii) -> None:
    """Small pages return each object once, in date-added order; reading again from any
    object's date_added returns exactly those added after it."""
    await send(taxii.fr, 5, "GREEN")
    await taxii.wait_indexed(5)
    collection = await taxii.collection("amber-reader")
    whole = await asyncio.to_thread(read_all, collection, 1000)
    paged = await asyncio.to_thread(read_all, collection, 3)
    ids = [o["id"] for o in paged]
    assert len(ids) == len(set(ids)) == len(whole) == 2 + 5 * 2 + 1  # marks, identity, 5x2
    assert ids == [o["id"] for o in whole]

    manifest = await asyncio.to_thread(collection.get_manifest)
    dates = [m["date_added"] for m in manifest["objects"]]
    assert dates == sorted(dates)
    assert len(set(dates)) == len(dates)
    for cut in (0, 4, len(dates) - 1):
        rest = await asyncio.to_thread(read_all, collection, 2, added_after=dates[cut])
        assert [o["id"] for o in rest] == ids[cut + 1 :]


@pytest.mark.integration
async def test_a_taxii_post_becomes_signed_alerts_that_come_back_through_taxii(
    taxii: Taxii,
) -> None:
    """The writer POSTs stix2 indicators (one with an unmappable pattern, one TLP:RED without
    recipients): the status names each refused one with its reason; the others go through the
    outbox, are signed, come back from the bus into DE's store and are served again. A
    read-only token may not POST."""
    indicators = [
        stix2.v21.Indicator(
            name=f"phishing {i}",
            pattern=f"[url:value = 'https://phish-{i}.example.com/login']",
            pattern_type="stix",
            valid_from=datetime.now(UTC) - timedelta(minutes=5),
            object_marking_refs=["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
        )
        for i in range(3)
    ]
    bad = stix2.v21.Indicator(
        pattern="[process:name = 'evil.exe']", pattern_type="stix", valid_from=datetime.now(UTC)
    )
    red = stix2.v21.Indicator(
        pattern="[domain-name:value = 'red.example']",
        pattern_type="stix",
        valid_from=datetime.now(UTC) - timedelta(minutes=5),
        object_marking_refs=["marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"],
    )
    objects = [json.loads(x.serialize()) for x in [*indicators, bad, red]]
    envelope = {"objects": objects}

    reader = await taxii.collection("amber-reader")
    assert not reader.can_write
    refused = await asyncio.to_thread(
        requests.post,
        reader.objects_url,
        json=envelope,
        headers={"Content-Type": MEDIA_TYPE, "Accept": MEDIA_TYPE},
        auth=Bearer("amber-reader"),
        timeout=30,
    )
    assert refused.status_code == 403

    status = await asyncio.to_thread((await taxii.collection("writer")).add_objects, envelope)
    assert (status.success_count, status.failure_count) == (3, 2)
    why = {f["id"]: f["message"] for f in status.failures}
    assert "object type 'process'" in why[bad.id]
    assert "TLP:RED needs named recipients" in why[red.id]

    await taxii.de.wait_published(3)
    await taxii.wait_indexed(3)
    back = await asyncio.to_thread(read_all, reader, 100, type="report")
    ids = {o["id"].partition("--")[2] for o in back}
    assert ids == {x.id.partition("--")[2] for x in indicators}
    assert all(o["created_by_ref"] == back[0]["created_by_ref"] for o in back)


@pytest.mark.integration
async def test_a_retracted_alert_leaves_the_collection(taxii: Taxii) -> None:
    """FR withdraws one of two alerts: its objects are gone from DE's TAXII collection."""
    await send(taxii.fr, 2, "GREEN", title="to withdraw")
    await taxii.wait_indexed(2)
    collection = await taxii.collection("amber-reader")
    reports: Callable[[], list[dict[str, Any]]] = lambda: read_all(collection, 100, type="report")  # noqa: E731
    first = (await asyncio.to_thread(reports))[0]
    alert_id = first["id"].partition("--")[2]
    fr = taxii.fr
    await fr.wait_stored(2)
    stored = await fr.store.list_records(topic=fr.topics[0])
    [target] = [r for r in stored if r.payload.get("alert_id") == alert_id]
    await retract(fr, target)
    connector = taxii.connector

    async def gone() -> bool:
        ids = [o["id"] for o in await asyncio.to_thread(reports)]
        return first["id"] not in ids and len(ids) == 1

    for _ in range(300):
        if await gone():
            break
        await asyncio.sleep(0.1)
    assert await gone(), connector


@pytest.mark.integration
async def test_hostile_requests_are_answered_4xx_and_the_server_keeps_serving(
    taxii: Taxii,
) -> None:
    """No token, a wrong token, a wrong media type, a body that is not JSON, a bad
    added_after, an unknown collection: each a TAXII error with its status; a REPORT token
    may not file another category; then a valid read still works. The index is private."""
    collection = await taxii.collection("writer")
    objects_url = collection.objects_url
    taxii_headers = {"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE}
    plain = {"Accept": MEDIA_TYPE, "Content-Type": "text/plain"}

    def call(method: str, url: str, token: str | None, **kw: Any) -> tuple[int, Any]:
        auth = Bearer(token) if token else None
        kw.setdefault("headers", taxii_headers)
        r = requests.request(method, url, auth=auth, timeout=30, **kw)
        return r.status_code, r.json() if r.content else None

    cases = [
        (("GET", objects_url, None), 401),
        (("GET", objects_url, "not-a-token"), 401),
        (("GET", objects_url, "writer", {"headers": {"Accept": "text/html"}}), 406),
        (("POST", objects_url, "writer", {"data": b"{not json"}), 400),
        (("POST", objects_url, "writer", {"json": {"objects": "x"}}), 400),
        (("POST", objects_url, "writer", {"data": b"{}", "headers": plain}), 415),
        (("GET", objects_url + "?added_after=yesterday", "writer"), 400),
        (("GET", objects_url.replace(collection.id, "nope"), "writer"), 404),
        (("GET", taxii.url + "/ncp/status/" + "0" * 8 + "/", "writer"), 404),
    ]  # fmt: skip
    for args, expected in cases:
        method, url, token, *extra = args
        status, body = await asyncio.to_thread(
            call, method, url, token, **(extra[0] if extra else {})
        )
        assert status == expected, (args, body)
        assert body["http_status"] == str(expected)
    phish = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--3f2b8c1e-9d4a-4e5f-8a7b-6c5d4e3f2a1b",
        "created": "2026-11-27T10:00:00.000Z",
        "modified": "2026-11-27T10:00:00.000Z",
        "pattern": "[domain-name:value = 'phish.example']",
        "pattern_type": "stix",
        "valid_from": "2026-11-27T10:00:00Z",
        "labels": ["ncp-category:FRAUDULENT_SALES"],
    }
    status, body = await asyncio.to_thread(
        call, "POST", objects_url, "bank", json={"objects": [phish]}
    )
    assert status == 202, body
    assert body["failures"] == [
        {"id": phish["id"], "message": "category FRAUDULENT_SALES refused"}
    ]  # a victim company files only its own categories
    assert await asyncio.to_thread(read_all, collection, 10) == []
    db = Path(taxii.de.config.keys.signing_key.parent) / "taxii.db"
    assert db.stat().st_mode & 0o077 == 0
