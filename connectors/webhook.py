"""Built-in outbound connector ``webhook``: POSTs each shared record (and each withdrawal)
as JSON to a case system, signed with HMAC-SHA256.

Options::

    [[connectors]]
    name = "case-system"
    plugin = "webhook"
    timeout_s = 30                       # the node abandons a call after this (then retries)
    [connectors.options]
    url = "https://cases.police.example/exchange"
    secret_file = "webhook.secret"       # or secret = "..." (the shared HMAC key)
    request_timeout_s = 10

Each request::

    POST <url>
    Content-Type: application/json
    X-Exchange-Event: deliver | retract
    X-Exchange-Timestamp: 1764360000            # Unix seconds when it was signed
    X-Exchange-Signature: sha256=<hex>          # HMAC-SHA256(secret, timestamp + "." + body)
    Idempotency-Key: deliver:<message id>       # the same on every retry of this event

    {"event": "deliver", "record": {...SharedRecord.to_json()...}}
    {"event": "retract", "message_id": "..."}

**How the receiver checks it** (:func:`verify_signature` does exactly this): take the raw
body bytes as received, compute ``HMAC-SHA256(secret, timestamp_header + "." + body)``,
compare it with the signature header in constant time, and refuse the request unless the
timestamp is within ``tolerance_s`` (300 s) of its own clock. Then process each
``Idempotency-Key`` once: the node delivers **at least once** (after a failure or a restart
it sends the same event again, signed afresh), so a receiver that keeps the keys it has
processed sees each event exactly once. A replayed request is refused by the timestamp
check once it is old, and by the key before that.

Answers: 2xx is a delivery (audited as DISCLOSURE); 408, 429, 5xx, a timeout or a refused
connection are transient (the node retries the same event with backoff, never skipping it);
any other 4xx is a permanent refusal of that record (``RecordRejected``: logged, kept in
``node status``, the node moves on).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from uuid import UUID

import aiohttp

from connectors.api import ConnectorContext, RecordRejected, SharedRecord
from exchange.errors import InputError, Reason

TOLERANCE_S = 300
TRANSIENT = frozenset({408, 425, 429})


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: bytes,
    *,
    timestamp: str,
    body: bytes,
    signature: str,
    now_s: float,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """The receiver's check: the signature matches and the timestamp is fresh."""
    if not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class WebhookConnector:
    """POSTs deliveries and retractions to ``options.url``."""

    def __init__(self, context: ConnectorContext) -> None:
        where = f"connectors.{context.name}.options"
        url = context.options.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InputError(
                [(f"{where}.url", "an http(s) URL is required")], reason=Reason.BAD_CONFIG
            )
        self.url = url
        self.secret = self._secret(context, where)
        timeout = context.options.get("request_timeout_s", 10)
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise InputError(
                [(f"{where}.request_timeout_s", "a positive number")], reason=Reason.BAD_CONFIG
            )
        self.timeout = aiohttp.ClientTimeout(total=float(timeout))
        self._session: aiohttp.ClientSession | None = None

    @staticmethod
    def _secret(context: ConnectorContext, where: str) -> bytes:
        inline = context.options.get("secret")
        if isinstance(inline, str) and len(inline) >= 16:
            return inline.encode("utf-8")
        if context.options.get("secret_file"):
            path = context.path("secret_file")
            try:
                text = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise InputError(
                    [(f"{where}.secret_file", f"cannot read {path}: {exc}")],
                    reason=Reason.BAD_CONFIG,
                ) from None
            if len(text) >= 16:
                return text.encode("utf-8")
        raise InputError(
            [(f"{where}.secret", "a shared secret of at least 16 characters (or secret_file)")],
            reason=Reason.BAD_CONFIG,
        )

    async def _post(self, event: str, message_id: UUID, document: dict[str, Any]) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = json.dumps(document, sort_keys=True).encode("utf-8")
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Exchange-Event": event,
            "X-Exchange-Timestamp": str(stamp),
            "X-Exchange-Signature": sign(self.secret, stamp, body),
            "Idempotency-Key": f"{event}:{message_id}",
        }
        try:
            async with self._session.post(self.url, data=body, headers=headers) as answer:
                status = answer.status
                text = (await answer.text())[:200]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectionError(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            return True
        if status >= 500 or status in TRANSIENT:
            raise ConnectionError(f"{self.url} answered {status}: {text}")
        raise RecordRejected(f"{self.url} answered {status}: {text}")

    async def deliver(self, record: SharedRecord, context: ConnectorContext) -> bool:
        document = {"event": "deliver", "record": record.to_json()}
        return await self._post("deliver", record.message_id, document)

    async def retract(self, message_id: UUID, context: ConnectorContext) -> bool:
        document = {"event": "retract", "message_id": str(message_id)}
        return await self._post("retract", message_id, document)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
