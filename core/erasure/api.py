"""``MemoryClient``'s clearing and erasure methods (docs/erasure.md), as a mixin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from core.crypto import KeyStore, vault_for
from core.erasure import export, messages, receipts
from core.erasure.receipts import Receipt
from core.erasure.request import ErasureRequests
from core.erasure.sessions import EVERYTHING, MESSAGES, SUMMARIES, Cleared, SessionClearer
from core.errors import ConfigurationError, ValidationError
from core.models import validate_id

if TYPE_CHECKING:
    import redis
    from sqlalchemy import Engine

    from config.settings import Settings
    from core.store.keys import Keys
    from core.store.scripts import Scripts

ERASE_TASK = "maintenance.erase"


class ErasureAPI:
    redis: redis.Redis
    settings: Settings
    keys: Keys
    scripts: Scripts
    _enqueue: Callable[[str, list[str]], None] | None

    @property
    def engine(self) -> Engine:  # provided by MemoryClient
        raise NotImplementedError

    def _clear(self, session_id: str, tenant: str, what: str) -> Cleared:
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        clearer = SessionClearer(scripts=self.scripts, engine=self.engine, settings=self.settings)
        return clearer.clear(tenant, session_id, what=what)

    def clear_session(self, session_id: str, *, tenant: str = "default") -> Cleared:
        """Remove one session's history everywhere (Redis, the WAL's undrained entries, the
        durable store): messages, summaries, state and agent results. The session id stays
        usable: the next append starts an empty history and ``seq`` continues (never reused).
        Returns what was removed, as counts."""
        return self._clear(session_id, tenant, EVERYTHING)

    def clear_buffer(self, session_id: str, *, tenant: str = "default") -> Cleared:
        """Remove the session's messages everywhere but keep its summary (what the
        conversation was about survives; the transcript does not)."""
        return self._clear(session_id, tenant, MESSAGES)

    def clear_summaries(self, session_id: str, *, tenant: str = "default") -> Cleared:
        """Remove the session's summaries everywhere; its messages stay and are summarized
        again when the trigger is next crossed."""
        return self._clear(session_id, tenant, SUMMARIES)

    def _keystore(self) -> KeyStore:
        return vault_for(self.engine, self.settings).keystore

    def _destroy_keys(self, tenant: str, subject_id: str | None) -> list[str]:
        """Crypto-shredding: the data keys go first (core/crypto)."""
        store = self._keystore()
        if subject_id is None:
            return store.destroy_tenant(tenant)
        return store.destroy_subject(tenant, subject_id)

    def _key_alive(self, key_id: str) -> bool:
        return self._keystore().get(key_id) is not None

    def _requests(self) -> ErasureRequests:
        return ErasureRequests(
            redis=self.redis,
            scripts=self.scripts,
            engine=lambda: self.engine,
            settings=self.settings,
            destroy_keys=self._destroy_keys,
        )

    def _send_erase(self, receipt: Receipt) -> Receipt:
        if receipt.stage == receipts.QUEUED:
            if self._enqueue is None:
                raise ConfigurationError(
                    "erasure needs a way to send tasks: MemoryClient.from_settings("
                    "enqueue=tasks.llm.broker_enqueue(settings)), or run `memscribe erase`"
                )
            # The receipt id only: a subject id would show in the broker, Flower and the
            # task dead letters.
            self._enqueue(ERASE_TASK, [receipt.receipt_id])
        return receipt

    def erase_subject(
        self, subject_id: str, *, tenant: str = "default", request_id: str
    ) -> Receipt:
        """Erase everything memscribe holds about a data subject (GDPR article 17).

        Returns at once with a receipt (``receipt_id``, ``status`` pending): from then on no
        write in flight can bring the subject's data back, the data keys are destroyed and
        Redis holds nothing of it; ``maintenance.erase`` deletes the rest and completes the
        receipt (``erasure_status``). Idempotent on ``request_id``: a replay returns the same
        receipt; the same id with other arguments raises ``ValidationError``. Data appended
        after this call is new data and is kept."""
        return self._send_erase(
            self._requests().subject(subject_id, tenant=tenant, request_id=request_id)
        )

    def erase_tenant(self, tenant: str, *, request_id: str) -> Receipt:
        """Erase a whole tenant (every session, subject, memory, state and usage row); the
        same receipts and guarantees as ``erase_subject``."""
        return self._send_erase(self._requests().tenant(tenant, request_id=request_id))

    def delete_message(
        self, message_id: str, *, tenant: str = "default", session_id: str | None = None
    ) -> bool:
        """Delete one message everywhere (Redis, its WAL entry, dead letters, the store); a
        summary that covered it is dropped and rebuilt without it (the next summary folds
        what it had folded). Its seq is never reused. False when there is no such message.
        ``session_id`` is optional: it spares the search of undrained WAL entries."""
        validate_id("message_id", message_id)
        validate_id("tenant", tenant)
        if session_id is not None:
            validate_id("session_id", session_id)
        dropped = messages.delete_message(
            self.redis,
            self.scripts,
            self.engine,
            self.keys,
            message_id,
            tenant=tenant,
            session_id=session_id,
        )
        if dropped is None:
            return False
        if dropped.summaries and self._enqueue is not None:
            self.request_summary(dropped.session_id, tenant=tenant)  # type: ignore[attr-defined]
        return True

    def export_subject(self, subject_id: str, *, tenant: str = "default") -> Iterator[str]:
        """Every record held about the subject as one JSON document, in pieces (GDPR articles
        15 and 20): ``"".join(client.export_subject(...))`` parses; stream it to a file."""
        validate_id("subject_id", subject_id)
        validate_id("tenant", tenant)
        return export.export_subject(self, self._requests(), subject_id, tenant=tenant)  # type: ignore[arg-type]

    def erasure_status(self, receipt_id: str) -> Receipt:
        """The receipt: pending -> completed (or failed, with ``reason``)."""
        validate_id("receipt_id", receipt_id)
        found = receipts.load(self.engine, receipt_id)
        if found is None:
            raise ValidationError("receipt_id", f"no erasure receipt {receipt_id!r}")
        return found
