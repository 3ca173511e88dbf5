"""The TAXII 2.1 HTTP API (FastAPI): discovery, one API root, a collection per topic.

Routes (every one needs ``Authorization: Bearer <token>``; media type
``application/taxii+json;version=2.1`` both ways)::

    GET  /taxii2/                                   discovery
    GET  /{root}/                                   API root
    GET  /{root}/collections/                       the collections (one per topic)
    GET  /{root}/collections/{id}/                  one collection
    GET  /{root}/collections/{id}/objects/          objects: limit, next, added_after,
                                                    match[id], match[type]
    GET  /{root}/collections/{id}/objects/{sid}/    one object
    GET  /{root}/collections/{id}/manifest/         the same pages, as manifest records
    POST /{root}/collections/{id}/objects/          add objects (STIX import -> submit)
    GET  /{root}/status/{status_id}/                the status of an add

Pages carry ``X-TAXII-Date-Added-First`` / ``-Last``; ``next`` is opaque (a position in the
index). A token reads only what its ``max_tlp``, ``max_handling_code`` and ``categories``
allow (:class:`connectors.tokens.Grant`); objects it may not read do not exist for it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from connectors.taxii.index import Index, Row, parse_timestamp, timestamp
from connectors.tokens import Grant, Role, TokenTable

MEDIA_TYPE = "application/taxii+json;version=2.1"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1"

#: ``add(collection_kind, envelope, grant) -> status`` (the connector's TAXII POST).
AddObjects = Callable[[str, Mapping[str, Any], Grant], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Collection:
    id: str
    kind: str  # the topic kind: "alerts"
    title: str


class TaxiiError(Exception):
    def __init__(self, status: int, title: str, description: str = "") -> None:
        self.status, self.title, self.description = status, title, description


def _taxii(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(content, status, headers=dict(headers or {}), media_type=MEDIA_TYPE)


def _accepts(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    if not accept or "*/*" in accept:
        return True
    return any(
        part.split(";")[0].strip() == "application/taxii+json"
        and ("version" not in part or "version=2.1" in part.replace(" ", ""))
        for part in accept.split(",")
    )


def build_app(
    *,
    title: str,
    root: str,
    collections: list[Collection],
    tokens: TokenTable,
    index: Index,
    add: AddObjects,
    statuses: Mapping[str, dict[str, Any]],
    owners: Mapping[str, str],
    max_page: int,
) -> FastAPI:
    app = FastAPI(title=title, openapi_url=None, docs_url=None, redoc_url=None)
    by_id = {c.id: c for c in collections}

    @app.exception_handler(TaxiiError)
    async def _error(request: Request, exc: TaxiiError) -> Response:
        body = {"title": exc.title, "description": exc.description, "http_status": str(exc.status)}
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return _taxii(body, exc.status, headers)

    def grant_of(request: Request, role: Role | None = None) -> Grant:
        grant = tokens.authenticate(request.headers.get("authorization"))
        if grant is None:
            raise TaxiiError(401, "Unauthorized", "a valid bearer token is required")
        if role is not None and not grant.may(role):
            raise TaxiiError(403, "Forbidden", f"this token lacks the {role.value} role")
        if not _accepts(request):
            raise TaxiiError(406, "Not Acceptable", f"this server answers {MEDIA_TYPE}")
        return grant

    def collection_of(collection_id: str) -> Collection:
        if collection_id not in by_id:
            raise TaxiiError(404, "Not Found", f"no collection {collection_id}")
        return by_id[collection_id]

    def resource(c: Collection, grant: Grant) -> dict[str, Any]:
        return {
            "id": c.id,
            "title": c.title,
            "description": f"The node's {c.kind} topic as STIX 2.1 objects",
            "can_read": grant.may(Role.READ),
            "can_write": grant.may(Role.SUBMIT) or grant.may(Role.REPORT),
            "media_types": [STIX_MEDIA_TYPE],
        }

    @app.get("/taxii2/")
    async def discovery(request: Request) -> Response:
        grant_of(request)
        base = str(request.base_url).rstrip("/")
        api_root = f"{base}/{root}/"
        return _taxii({"title": title, "default": api_root, "api_roots": [api_root]})

    @app.get(f"/{root}/")
    async def api_root(request: Request) -> Response:
        grant_of(request)
        info = {"title": title, "versions": [MEDIA_TYPE], "max_content_length": 104_857_600}
        return _taxii(info)

    @app.get(f"/{root}/collections/")
    async def list_collections(request: Request) -> Response:
        grant = grant_of(request)
        return _taxii({"collections": [resource(c, grant) for c in collections]})

    @app.get(f"/{root}/collections/{{collection_id}}/")
    async def get_collection(collection_id: str, request: Request) -> Response:
        grant = grant_of(request)
        return _taxii(resource(collection_of(collection_id), grant))

    async def read_page(
        request: Request, collection_id: str, ids: list[str]
    ) -> tuple[list[Row], bool]:
        grant = grant_of(request, Role.READ)
        c = collection_of(collection_id)
        q = request.query_params
        try:
            limit = max(1, min(int(q.get("limit", max_page)), max_page))
            after = int(q.get("next") or 0)
            added_after = parse_timestamp(q["added_after"]) if "added_after" in q else None
        except ValueError as exc:
            raise TaxiiError(400, "Bad Request", f"limit, next or added_after: {exc}") from None
        ids = ids or [x for x in q.get("match[id]", "").split(",") if x]
        types = [x for x in q.get("match[type]", "").split(",") if x]
        return await asyncio.to_thread(
            index.page,
            c.id,
            grant,
            after_seq=after,
            added_after_us=added_after,
            limit=limit,
            ids=ids,
            types=types,
        )

    def page_headers(rows: list[Row]) -> dict[str, str]:
        if not rows:
            return {}
        return {
            "X-TAXII-Date-Added-First": timestamp(rows[0].added_us),
            "X-TAXII-Date-Added-Last": timestamp(rows[-1].added_us),
        }

    def envelope(rows: list[Row], more: bool) -> bytes:
        head = {"more": more, **({"next": str(rows[-1].seq)} if more and rows else {})}
        if not rows:
            return json.dumps(head).encode()
        objects = ",".join(r.body for r in rows)
        return f'{json.dumps(head)[:-1]}, "objects": [{objects}]}}'.encode()

    @app.get(f"/{root}/collections/{{collection_id}}/objects/")
    async def get_objects(collection_id: str, request: Request) -> Response:
        rows, more = await read_page(request, collection_id, [])
        return _taxii(envelope(rows, more), headers=page_headers(rows))

    @app.get(f"/{root}/collections/{{collection_id}}/objects/{{object_id}}/")
    async def get_object(collection_id: str, object_id: str, request: Request) -> Response:
        rows, more = await read_page(request, collection_id, [object_id])
        if not rows:
            raise TaxiiError(404, "Not Found", f"no object {object_id} for this token")
        return _taxii(envelope(rows, more), headers=page_headers(rows))

    @app.get(f"/{root}/collections/{{collection_id}}/manifest/")
    async def get_manifest(collection_id: str, request: Request) -> Response:
        rows, more = await read_page(request, collection_id, [])
        records = [
            {
                "id": r.stix_id,
                "date_added": timestamp(r.added_us),
                "version": r.version,
                "media_type": STIX_MEDIA_TYPE,
            }
            for r in rows
        ]
        body = {"more": more, **({"next": str(rows[-1].seq)} if more and rows else {})}
        return _taxii({**body, "objects": records}, headers=page_headers(rows))

    @app.post(f"/{root}/collections/{{collection_id}}/objects/")
    async def add_objects(collection_id: str, request: Request) -> Response:
        grant = grant_of(request)
        if not (grant.may(Role.SUBMIT) or grant.may(Role.REPORT)):
            raise TaxiiError(403, "Forbidden", "this token may not add objects")
        c = collection_of(collection_id)
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind != "application/taxii+json":
            raise TaxiiError(415, "Unsupported Media Type", f"send {MEDIA_TYPE}")
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise TaxiiError(400, "Bad Request", f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
            raise TaxiiError(400, "Bad Request", "objects: an envelope needs a list of objects")
        return _taxii(await add(c.kind, body, grant), 202)

    @app.get(f"/{root}/status/{{status_id}}/")
    async def get_status(status_id: str, request: Request) -> Response:
        grant = grant_of(request)
        status = statuses.get(status_id)
        if status is None or owners.get(status_id) != grant.name:  # only its own adds
            raise TaxiiError(404, "Not Found", f"no status {status_id}")
        return _taxii(status)

    return app
