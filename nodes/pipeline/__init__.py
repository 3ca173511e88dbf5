"""From raw Kafka records to what the store keeps: pure, no I/O, ``now`` passed in.

The package: :mod:`.records` (the data), :mod:`.opening` (step 1), :mod:`.decide` (step 2)
and :mod:`.wire` (the process pool's wire format); the names below are its API.

Two steps, so the costly one can run in threads or processes:

1. :func:`open_raw` - verify the signature, decrypt when addressed to this node, decode and
   validate the payload (``exchange.seal.open_record``), in two parts: :func:`check_raw`
   (the signature: libsodium, which releases the GIL, so a thread pool runs it) and
   :func:`open_checked` (the rest, Python-bound). :func:`ready` then reduces an opened record
   to an :class:`OpenedRecord`: the envelope's facts and the payload as a JSON-ready dict,
   all :func:`decide` and the store need. ``nodes.openpool`` runs both in worker processes
   and ships the result back as builtins (:func:`to_wire` / :func:`from_wire`).
2. :func:`decide` - replay check ((sender, message id) already stored, or seen earlier in
   this batch -> quarantine ``replayed``; wire v2: one id from two senders is two
   messages, so no member can squat another's id), then the topic's rule chain -> a
   :class:`StoredRecord` (plus a :class:`RetractionOrder` for a Retraction), a
   :class:`QuarantineEntry`, or a :class:`Skipped`.

Every :class:`ExchangeError` becomes a quarantine entry with its reason code; anything
unexpected (a bug) in one record becomes a quarantine entry with reason ``internal_error``
(logged at ERROR by the caller) - one record never stops the node.
"""

from __future__ import annotations

from nodes.pipeline.decide import (
    decide,
    message_ids,
    process,
)
from nodes.pipeline.opening import (
    OWN_MESSAGE,
    Checked,
    check_raw,
    check_raws,
    open_checked,
    open_own,
    open_raw,
    open_raws,
    open_ready,
    open_ready_many,
    own_claim,
    own_key_ids,
    own_message,
    ready,
    refuse_unsent,
)
from nodes.pipeline.records import (
    INTERNAL_ERROR,
    MAX_DETAIL,
    BatchOutcome,
    Decision,
    OpenedRecord,
    Opening,
    PipelineContext,
    RawRecord,
    Ready,
    Skipped,
    TopicPolicy,
    quarantine,
)
from nodes.pipeline.wire import (
    RawWire,
    ReadyWire,
    from_wire,
    raw_from_wire,
    raw_to_wire,
    to_wire,
)

__all__ = [
    "INTERNAL_ERROR",
    "MAX_DETAIL",
    "OWN_MESSAGE",
    "BatchOutcome",
    "Checked",
    "Decision",
    "OpenedRecord",
    "Opening",
    "PipelineContext",
    "RawRecord",
    "RawWire",
    "Ready",
    "ReadyWire",
    "Skipped",
    "TopicPolicy",
    "check_raw",
    "check_raws",
    "decide",
    "from_wire",
    "message_ids",
    "open_checked",
    "open_own",
    "open_raw",
    "open_raws",
    "open_ready",
    "open_ready_many",
    "own_claim",
    "own_key_ids",
    "own_message",
    "process",
    "quarantine",
    "raw_from_wire",
    "raw_to_wire",
    "ready",
    "refuse_unsent",
    "to_wire",
]
