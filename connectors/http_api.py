"""The REST API of the ``http-inbound`` connector: a FastAPI application, thin handlers.

Routes (all JSON; every request carries ``Authorization: Bearer <token>``)::

    POST /v1/alerts              an OffenceAlert          roles: submit, or report (its categories)
    POST /v1/alerts/batch        up to 1,000 of them, in one transaction: all or none
    POST /v1/blacklist           a change of this node's own list            role: submit
    POST /v1/pseudonym-queries   a hit/no-hit query (the node blinds it)     role: submit
    GET  /v1/pseudonym-queries/{query_id}   the answers so far        roles: submit, read
    GET  /v1/submissions/{id}    pending / signed / sent, with the message id
    GET  /openapi.json           the OpenAPI 3.1 document (no token needed)

An alert's body is ``{"payload": {...}, "handling": {...}, "recipients": [...]}``; the payload
is the OffenceAlert model (``components.schemas``), validated exactly like ``exchange alert
publish`` (``nodes.inbound.build_item`` through ``ConnectorContext.submit``). It is answered
202 with the submission's status (its outbox id and the message id it will travel under).

A blacklist change (``BlacklistChangeIn``) names the list and the entries to add and remove
as ``exchange blacklist add|remove`` takes them; the node normalizes them and publishes the
list's next version (``ConnectorContext.blacklist_change``). A pseudonym query
(``PseudonymQueryIn``) carries the handle to this node only: the node blinds it
(``ConnectorContext.ask_pseudonym``), so the handle never reaches the bus, the outbox or the
logs. Neither takes a raw message: a client never picks a version or sends a handle in clear.

Errors are ``application/problem+json``: ``{"status": 422, "title": ..., "problems": [{"field":
"payload.title", "reason": "..."}]}``. 401: no or unknown token; 403: the token's role or
categories do not allow it (the field is named); 404: no such submission; 413: body too
large; 422: bad input, every problem listed.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.api import ConnectorContext, Submission, SubmissionStatus
from connectors.http_models import (
    BlacklistChangeIn,
    BlacklistChangeOut,
    PseudonymAnswersOut,
    PseudonymQueryIn,
    PseudonymQueryOut,
)
from connectors.tokens import Grant, Role, TokenTable
from exchange.errors import ExchangeError, InputError
from exchange.models import OffenceAlert
from exchange.topics import MessageType

PROBLEM = "application/problem+json"
#: Outbox ids remembered per token in a run, for REPORT tokens reading their own statuses.
MAX_REMEMBERED = 100_000


class Problem(BaseModel):
    field: str = Field(description="Where the problem is, e.g. payload.title.")
    reason: str = Field(description="What is wrong with it.")


class ProblemReport(BaseModel):
    status: int
    title: str
    problems: list[Problem] = Field(default_factory=list)


class HandlingIn(BaseModel):
    """How the message is to be handled; anything left out is "cannot be judged"."""

    tlp: str | None = Field(default=None, description="CLEAR, GREEN, AMBER (default), ...")
    code: str | None = Field(default=None, description="Handling code H0..H3 (default H1).")
    restriction: str | None = Field(default=None, description="Restriction text (H3).")
    source_reliability: str | None = Field(default=None, description="A, B, C or X.")
    information_reliability: str | int | None = Field(default=None, description="1..4.")


def _payload_field(model: str) -> Any:
    return Field(description=f"The {model} (see components.schemas.{model}).")


#: Each body model's payload, pointed at its message model in the OpenAPI document.
PAYLOAD_MODELS: dict[str, type[BaseModel]] = {"AlertSubmission": OffenceAlert}


class _Submission(BaseModel):
    handling: HandlingIn = Field(default_factory=HandlingIn)
    recipients: list[str] = Field(
        default_factory=list, description="Member States, e.g. ['DE']; empty: every member."
    )


class AlertSubmission(_Submission):
    payload: dict[str, Any] = _payload_field("OffenceAlert")


class AlertBatch(BaseModel):
    """Up to MAX_BATCH alerts filed together: all accepted, or none (every problem listed
    as ``items[i].<field>``)."""

    items: list[AlertSubmission] = Field(min_length=1, max_length=1000)


class Accepted(BaseModel):
    outbox_id: int
    message_id: UUID = Field(description="The id the message travels under.")


class BatchOut(BaseModel):
    accepted: list[Accepted]


class SubmissionOut(BaseModel):
    outbox_id: int
    status: Literal["pending", "signed", "sent"]
    message_id: UUID | None = Field(description="The id the message travels under.")
    message_type: str
    topic: str
    attempts: int
    last_error: str | None


def _out(status: SubmissionStatus) -> SubmissionOut:
    return SubmissionOut.model_validate(
        {
            "outbox_id": status.outbox_id,
            "status": status.status,
            "message_id": status.message_id,
            "message_type": status.message_type,
            "topic": status.topic,
            "attempts": status.attempts,
            "last_error": status.last_error,
        }
    )


class Refused(Exception):  # noqa: N818 - an answer, not a malfunction
    """An HTTP refusal with its problems (401, 403, 404, 413)."""

    def __init__(self, status: int, title: str, problems: list[tuple[str, str]]) -> None:
        self.status, self.title, self.problems = status, title, problems
        super().__init__(title)


def problem(status: int, title: str, problems: list[tuple[str, str]]) -> JSONResponse:
    body = {
        "status": status,
        "title": title,
        "problems": [{"field": f, "reason": r} for f, r in problems],
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def authorise(
    grant: Grant, message_type: MessageType, payload: Mapping[str, Any], where: str = ""
) -> None:
    """Refused(403) unless ``grant`` may file this alert (SUBMIT, or REPORT of its
    categories). ``where`` prefixes the field named."""
    may = grant.may(Role.SUBMIT) or (
        grant.may(Role.REPORT) and message_type is MessageType.OFFENCE_ALERT
    )
    if not may:
        roles = sorted(r.value for r in grant.roles)
        raise Refused(
            403, "forbidden", [("authorization", f"roles {roles} may not file a {message_type}")]
        )
    allowed_categories(grant, [(where + "payload.category", payload.get("category"))])


def allowed_categories(grant: Grant, named: list[tuple[str, Any]]) -> None:
    """Refused(403) unless every category named is among the token's (if it has a list)."""
    for field, category in named:
        if not grant.category_allowed(category if isinstance(category, str) else None):
            allowed = sorted(grant.categories)
            reason = f"{category!r} is not among this token's {allowed}"
            raise Refused(403, "forbidden", [(field, reason)])


def submitter(grant: Grant, what: str) -> None:
    """Refused(403) unless ``grant`` has the SUBMIT role (blacklist changes, queries)."""
    if not grant.may(Role.SUBMIT):
        roles = sorted(r.value for r in grant.roles)
        raise Refused(403, "forbidden", [("authorization", f"roles {roles} may not {what}")])


def field_path(loc: tuple[Any, ...]) -> str:
    """A validation error's location as the API names fields: ``add[0].value``."""
    out = ""
    for part in loc:
        if part == "body":
            continue
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return out or "body"


def build_app(
    context: ConnectorContext, tokens: TokenTable, *, max_body_bytes: int = 1 << 20
) -> FastAPI:
    """The application: handlers hand validated input to ``context.submit``."""
    app = FastAPI(
        title="ncp-exchange inbound API",
        version="1",
        description="File alerts, blacklist changes and pseudonym queries with a node.",
        docs_url=None,
        redoc_url=None,
    )
    #: per token name: the outbox ids it filed in this run (REPORT tokens see only those)
    filed: dict[str, set[int]] = {}

    async def grant_of(authorization: str | None = Header(default=None)) -> Grant:
        grant = tokens.authenticate(authorization)
        if grant is None:
            raise Refused(
                401, "unauthorised", [("authorization", "a valid bearer token is required")]
            )
        return grant

    Authorised = Annotated[Grant, Depends(grant_of)]  # noqa: N806 - a type alias

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return problem(exc.status, exc.title, exc.problems)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [(field_path(tuple(err["loc"])), str(err["msg"])) for err in exc.errors()]
        return problem(422, "invalid input", problems)

    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> JSONResponse:
        return problem(422, "invalid input", exc.problems)

    @app.exception_handler(ExchangeError)
    async def _exchange(_: Request, exc: ExchangeError) -> JSONResponse:
        status = 503 if exc.retriable else 500
        return problem(status, "not accepted", [("node", exc.detail)])

    def remember(grant: Grant, outbox_ids: list[int]) -> None:
        mine = filed.setdefault(grant.name, set())
        if len(mine) + len(outbox_ids) > MAX_REMEMBERED:
            mine.clear()  # older submissions stay readable by submit/read tokens
        mine.update(outbox_ids)

    async def accept(
        grant: Grant, message_type: MessageType, body: _Submission, payload: dict[str, Any]
    ) -> JSONResponse:
        authorise(grant, message_type, payload)
        outbox_id = await context.submit(
            message_type.value,
            payload,
            handling=body.handling.model_dump(),
            recipients=body.recipients,
        )
        remember(grant, [outbox_id])
        context.log.info(
            "submission accepted", client=grant.name, type=message_type.value, outbox_id=outbox_id
        )
        status = await context.submission_status(outbox_id)
        content: Any = {"outbox_id": outbox_id} if status is None else _out(status)
        return JSONResponse(jsonable_encoder(content), status_code=202)

    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ProblemReport, "description": text}
        for code, text in (
            (401, "No or unknown bearer token."),
            (403, "The token's role or categories do not allow it."),
            (422, "Bad input: every problem, with its field."),
        )
    }
    accepted: dict[str, Any] = {
        "status_code": 202,
        "response_model": SubmissionOut,
        "responses": responses,
    }

    @app.post("/v1/alerts", **accepted)
    async def post_alert(body: AlertSubmission, grant: Authorised) -> JSONResponse:
        """File an offence alert."""
        return await accept(grant, MessageType.OFFENCE_ALERT, body, body.payload)

    @app.post("/v1/alerts/batch", status_code=202, response_model=BatchOut, responses=responses)
    async def post_alerts(body: AlertBatch, grant: Authorised) -> JSONResponse:
        """File up to 1,000 offence alerts at once, in one transaction: all or none."""
        for i, item in enumerate(body.items):
            authorise(grant, MessageType.OFFENCE_ALERT, item.payload, f"items[{i}].")
        done = await context.submit_many(
            [
                Submission(
                    MessageType.OFFENCE_ALERT.value,
                    item.payload,
                    item.handling.model_dump(),
                    tuple(item.recipients),
                )
                for item in body.items
            ]
        )
        remember(grant, [outbox_id for outbox_id, _ in done])
        context.log.info("batch accepted", client=grant.name, count=len(done))
        accepted = [{"outbox_id": o, "message_id": str(m)} for o, m in done]
        return JSONResponse({"accepted": accepted}, status_code=202)

    @app.post(
        "/v1/blacklist", status_code=202, response_model=BlacklistChangeOut, responses=responses
    )
    async def post_blacklist(body: BlacklistChangeIn, grant: Authorised) -> JSONResponse:
        """Change one of this node's own blacklists: the node normalizes every entry and
        publishes the list's next version (as ``exchange blacklist add|remove``)."""
        submitter(grant, "change a blacklist")
        allowed_categories(
            grant, [(f"add[{i}].category", e.category) for i, e in enumerate(body.add)]
        )
        done = await context.blacklist_change(
            body.list_name,
            add=[e.model_dump(exclude_none=True) for e in body.add],
            remove=[e.model_dump(exclude_none=True) for e in body.remove],
            reason=body.reason,
        )
        remember(grant, [done.outbox_id])
        context.log.info(
            "blacklist change accepted",
            client=grant.name,
            list_id=done.list_id,
            version=done.version,
            outbox_id=done.outbox_id,
        )
        out = BlacklistChangeOut(
            outbox_id=done.outbox_id,
            message_id=done.message_id,
            list_id=done.list_id,
            version=done.version,
        )
        return JSONResponse(jsonable_encoder(out), status_code=202)

    @app.post(
        "/v1/pseudonym-queries",
        status_code=202,
        response_model=PseudonymQueryOut,
        responses=responses,
    )
    async def post_pseudonym(body: PseudonymQueryIn, grant: Authorised) -> JSONResponse:
        """Ask the members whether they know a handle: the node blinds it; only the blind
        travels (as ``exchange pseudonym query``). Answers: GET the query id."""
        submitter(grant, "ask about a pseudonym")
        allowed_categories(grant, [("category", body.category)])
        asked = await context.ask_pseudonym(
            platform=body.platform,
            handle=body.handle,
            purpose=body.purpose,
            legal_basis=body.legal_basis,
            category=body.category,
            justification=body.justification,
            actor=grant.name,
            recipients=tuple(body.recipients),
        )
        remember(grant, [asked.outbox_id])
        context.log.info(
            "pseudonym query sent",
            client=grant.name,
            query_id=asked.query_id,
            outbox_id=asked.outbox_id,
        )
        out = PseudonymQueryOut(
            query_id=asked.query_id, outbox_id=asked.outbox_id, message_id=asked.message_id
        )
        return JSONResponse(jsonable_encoder(out), status_code=202)

    @app.get(
        "/v1/pseudonym-queries/{query_id}",
        response_model=PseudonymAnswersOut,
        responses=responses,
    )
    async def get_pseudonym(query_id: str, grant: Authorised) -> PseudonymAnswersOut:
        """The answers received so far to a query this node asked (hit or not; on a hit
        the responder's case reference and contact unit)."""
        if not (grant.may(Role.SUBMIT) or grant.may(Role.READ)):
            submitter(grant, "read pseudonym answers")
        answers = await context.pseudonym_answers(query_id)
        return PseudonymAnswersOut.of(query_id, answers)

    @app.get(
        "/v1/submissions/{outbox_id}",
        response_model=SubmissionOut,
        responses={**responses, 404: {"model": ProblemReport, "description": "Unknown id."}},
    )
    async def get_submission(outbox_id: int, grant: Authorised) -> SubmissionOut:
        """What became of a submission: pending, signed or sent, with its message id."""
        own = outbox_id in filed.get(grant.name, set())
        if not (own or grant.may(Role.SUBMIT) or grant.may(Role.READ)):
            raise Refused(404, "not found", [("outbox_id", f"no submission {outbox_id} of yours")])
        status = await context.submission_status(outbox_id)
        if status is None:
            raise Refused(404, "not found", [("outbox_id", f"no submission {outbox_id}")])
        return _out(status)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for body, model in PAYLOAD_MODELS.items():
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
                payload = schemas[body]["properties"]["payload"]
                payload.pop("additionalProperties", None)
                payload.pop("type", None)
                payload["$ref"] = f"#/components/schemas/{model.__name__}"
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    return app


class BodyLimit:
    """Reads the whole request body before the application, answering 413 as soon as it
    passes ``limit`` bytes (with or without a Content-Length: chunked bodies too)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            if declared.isdigit() and int(declared) > self.limit:
                size = int(declared)
                break
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                break
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        if size > self.limit:
            too_large = problem(413, "too large", [("body", f"at most {self.limit} bytes")])
            await too_large(scope, receive, send)
            return
        whole = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
