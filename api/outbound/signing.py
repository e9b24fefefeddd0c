"""Signatures on what ordersaga sends, by the Standard Webhooks specification
(https://www.standardwebhooks.com): the `webhook-id`, `webhook-timestamp` and `webhook-signature`
headers, the last one `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

Webhook deliveries and remote warehouse commands are signed the same way, so a receiver verifies
both with the `standardwebhooks` package. The cryptography is that package's, not ours.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


# The specification's bounds on a secret's key, in bytes ("Signature scheme": 24 to 64).
SECRET_BYTES = range(24, 65)


def new_secret() -> str:
    """A fresh signing secret: `whsec_` and the base64 of 32 random bytes (the specification's form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_problem(secret: str) -> str | None:
    """What keeps `secret` from being a Standard Webhooks secret (`whsec_` and the base64 of a key of
    24 to 64 bytes), or None. standardwebhooks itself takes nearly any text, decoding what it can of
    it as base64, so a mistyped secret would sign with a key the other side does not hold."""
    if not secret.startswith(SECRET_PREFIX):
        return f"it does not start with {SECRET_PREFIX}"
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        return f"what follows {SECRET_PREFIX} is not base64"
    if len(key) not in SECRET_BYTES:
        return f"its key is {len(key)} bytes; the specification's are 24 to 64"
    return None


class Signer:
    """Signs bodies with one secret (`whsec_…`; standardwebhooks also takes the base64 key alone, and
    `secret_problem` says what `serve` refuses of a warehouse service's).

    Raises standardwebhooks' EmptyWebhookSecretError, or binascii.Error, for a secret that is not one.
    """

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def headers(self, message_id: str, body: bytes, at: datetime | None = None) -> dict[str, str]:
        """The three headers for `body`, sent as message `message_id` at `at` (now, by default).

        `message_id` must stay the same on every resend of the same message: receivers deduplicate
        on it."""
        at = at or datetime.now(UTC)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._webhook.sign(message_id, at, body),
        }
