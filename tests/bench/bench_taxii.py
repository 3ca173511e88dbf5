"""Our TAXII 2.1 server beside medallion 3.0.0, the OASIS reference server, in one run.

Both get the same ``4,000 * BENCH_SCALE`` (at least 1,000) STIX indicators of about 1 KB
marked TLP:AMBER, through the same ``taxii2-client`` calls:

- **ingest**: ``Collection.add_objects`` with envelopes of 1,000. Medallion: until its answer
  (its memory backend holds them). Ours, two figures: until the answers (every alert
  validated and in the outbox, durably), and until the node's publisher has every alert
  signed and acknowledged on the bus (the TAXII POST imports each indicator as an alert and
  files it with ``context.submit``; the publisher signs and sends).
- **read**: ``as_pages(get_objects, per_request=1000)`` until every indicator was read.
  Ours: once the node has read its own alerts back from the bus, verified and stored them,
  and handed them to the TAXII connector's index (not timed), ``match[type]=indicator`` so
  the same number of objects is read.

Medallion runs under gunicorn with one worker on 127.0.0.1, its memory backend, basic auth,
``max_page_size`` 1,000; ours in the node's event loop in this process (a real node on the
bench broker, SQLite store). Measured here beforehand, medallion ingested 1,266 objects/s
with envelopes of 1,000 and read 4,000 objects in 43 s. Targets: 10x medallion's ingest,
100x its read rate.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from taxii2client.v21 import ApiRoot, Collection, as_pages

from connectors.tokens import hash_token
from nodes.config import load_config
from nodes.daemon import Node
from tests.bench.harness import BenchContext, Figure
from tests.helpers.broker import free_port
from tests.helpers.federation import make_federation

ENVELOPE = 1000
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TOKEN = "bench-token"
_PAD = "Credential phishing page impersonating a bank; collected logins are resold. " * 12


def indicators(n: int) -> list[dict[str, Any]]:
    """``n`` STIX indicators of about 1 KB each, TLP:AMBER."""
    now = datetime.now(UTC)
    stamp = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    out = []
    for i in range(n):
        out.append(
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--{uuid.uuid4()}",
                "created": stamp,
                "modified": stamp,
                "name": f"Phishing page {i}",
                "description": _PAD[:700],
                "indicator_types": ["malicious-activity"],
                "pattern": f"[url:value = 'https://login-{i}.bank-phish.example.com/']",
                "pattern_type": "stix",
                "valid_from": stamp,
                "object_marking_refs": [AMBER],
            }
        )
    return out


def envelopes(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for i in range(0, len(objects), ENVELOPE):
        yield {"objects": objects[i : i + ENVELOPE]}


def ingest(collection: Collection, objects: list[dict[str, Any]]) -> int:
    ok = 0
    for envelope in envelopes(objects):
        status = collection.add_objects(envelope, wait_for_completion=False)
        ok += int(status.success_count)
    return ok


def read(collection: Collection, **filters: Any) -> int:
    count = 0
    for page in as_pages(collection.get_objects, per_request=ENVELOPE, **filters):
        count += len(page.get("objects", []))
    return count


class _Bearer(requests.auth.AuthBase):
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {TOKEN}"
        return r


# --- medallion -------------------------------------------------------------------------------


def medallion(folder: Path, objects: list[dict[str, Any]]) -> tuple[float, float]:
    """(ingest objects/s, read objects/s) of medallion under gunicorn, one worker."""
    port = free_port()
    root = f"http://127.0.0.1:{port}/api1/"
    collection_id = str(uuid.uuid4())
    data = {
        "/discovery": {"title": "bench", "default": root, "api_roots": [root]},
        "api1": {
            "information": {
                "title": "bench",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 104_857_600,
            },
            "status": [],
            "collections": [
                {
                    "id": collection_id,
                    "title": "alerts",
                    "can_read": True,
                    "can_write": True,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": [],
                }
            ],
        },
    }
    (folder / "data.json").write_text(json.dumps(data))
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(folder / "data.json"),
        },
        "users": {"bench": "secret"},
        "taxii": {"max_page_size": ENVELOPE},
    }
    (folder / "medallion.json").write_text(json.dumps(config))
    app = f'medallion:load_app("{folder / "medallion.json"}")'
    bind = f"127.0.0.1:{port}"
    # One worker; no worker timeout: a slow page must not get the worker (and its memory
    # backend, with every object) killed and restarted.
    gunicorn = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", bind, "-t", "0", app]
    log = (folder / "medallion.log").open("wb")
    proc = subprocess.Popen(gunicorn, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(root, auth=("bench", "secret"), timeout=5)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("medallion did not start under gunicorn") from None
                time.sleep(0.2)
        collection = Collection(
            f"{root}collections/{collection_id}/", user="bench", password="secret"
        )
        started = time.perf_counter()
        assert ingest(collection, objects) == len(objects)
        ingest_rate = len(objects) / (time.perf_counter() - started)
        started = time.perf_counter()
        assert read(collection) == len(objects)
        read_rate = len(objects) / (time.perf_counter() - started)
        return ingest_rate, read_rate
    except Exception:
        log.flush()
        print((folder / "medallion.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# --- ours ------------------------------------------------------------------------------------


async def ours(
    ctx: BenchContext, folder: Path, objects: list[dict[str, Any]]
) -> tuple[float, float]:
    """(ingest objects/s until signed on the bus, read objects/s) of our TAXII server."""
    fed = make_federation(folder / "fed", prefix=ctx.prefix, bootstrap=ctx.bootstrap)
    port = free_port()
    grant = {"name": "bench", "sha256": hash_token(TOKEN), "roles": ["submit", "read"]}
    spec = {
        "name": "taxii",
        "plugin": "taxii",
        "topics": ["alerts"],
        "options": {
            "listen": f"127.0.0.1:{port}",
            "tokens": [{**grant, "max_tlp": "AMBER", "max_handling_code": "H1"}],
        },
    }
    tables: dict[str, Any] = {"http": {"listen": ""}, "connectors": [spec]}
    node = Node(load_config(fed.config_path("DE"), **tables))
    await node.start()
    try:
        assert node.dispatcher is not None
        connector: Any = node.dispatcher.outbound[0].connector
        await asyncio.wait_for(connector.started.wait(), 60)

        def find() -> Collection:
            [alerts] = ApiRoot(f"http://127.0.0.1:{port}/ncp/", auth=_Bearer()).collections
            return alerts

        collection = await asyncio.to_thread(find)
        n = len(objects)
        started = time.perf_counter()
        assert await asyncio.to_thread(ingest, collection, objects) == n
        accept_rate = n / (time.perf_counter() - started)
        await node.wait_published(n, within_s=600)
        ingest_rate = n / (time.perf_counter() - started)
        await node.wait_until(lambda: node.metrics.disclosed.value("taxii") >= n, 600)
        started = time.perf_counter()
        assert await asyncio.to_thread(read, collection, type="indicator") == n
        read_rate = n / (time.perf_counter() - started)
        return accept_rate, ingest_rate, read_rate
    finally:
        await node.stop()


async def run(ctx: BenchContext) -> list[Figure]:
    objects = indicators(ctx.n(4000, minimum=1000))
    size = sum(len(json.dumps(o)) for o in objects) // len(objects)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        m_ingest, m_read = await asyncio.to_thread(medallion, folder, objects)
        o_accept, o_ingest, o_read = await ours(ctx, folder, objects)
    n = len(objects)
    label = f"taxii ingest, envelopes of {ENVELOPE}, {n} x {size} B (until signed on the bus)"
    accepted = f"taxii POST answered, envelopes of {ENVELOPE} (validated, in the outbox)"
    return [
        Figure(accepted, o_accept, "objects/s", "medallion 3.0.0 ingest", m_ingest),
        Figure(label, o_ingest, "objects/s", "medallion 3.0.0 ingest", m_ingest),
        Figure(
            f"taxii read, {n} indicators, pages of {ENVELOPE}",
            o_read,
            "objects/s",
            "medallion 3.0.0 read",
            m_read,
        ),
    ]
