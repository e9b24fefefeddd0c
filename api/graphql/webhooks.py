"""Webhooks through GraphQL: admins register endpoints, change and delete them (the signing secret is
answered once, when it is made or rotated, and never read back); operators and admins follow the
deliveries that did not go through at once and send failed ones again (api/access/rules.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types import Info

from api.graphql.connections import After, Before, Edge, First, Last, UncountedConnection, window
from api.graphql.edge.errors import ClientErrorCode, client_error
from api.graphql.enums import described
from api.graphql.types import Input, UserError, service, user_errors
from api.outbound.addresses import reach_problem, url_problem
from api.outbound.signing import new_secret
from domain.model.problems import Problem, ProblemCode
from persistence.codec import EVENT_TYPES
from persistence.read.event_log import decode_cursor, encode_cursor
from persistence.webhooks import Delivery, DeliveryStatus, Endpoint

if TYPE_CHECKING:
    from api.outbound.webhooks import Webhooks

MAX_DESCRIPTION = 500
WebhookDeliveryStatus = described(
    DeliveryStatus,
    "WebhookDeliveryStatus",
    "Where a webhook delivery is.",
    {
        "PENDING": "Waiting for its next attempt (or for an earlier event of its saga to be taken).",
        "SUCCEEDED": "The endpoint answered 2xx.",
        "FAILED": "Retried for --webhook-retry-for without success: sent again only by redeliverWebhooks.",
    },
)


@strawberry.type(
    description="Where journal events are POSTed, signed by the Standard Webhooks specification."
)
class WebhookEndpoint:
    id: strawberry.ID = strawberry.field(description="The endpoint's id.")
    url: str = strawberry.field(description="Where its events are POSTed.")
    events: list[str] | None = strawberry.field(
        description="The journal event types sent (docs/events.md); null: every type."
    )
    description: str | None = strawberry.field(description="What the admin noted about it.")
    enabled: bool = strawberry.field(description="Whether events are sent to it.")
    disabled_reason: str | None = strawberry.field(
        description="Why it is disabled: an admin disabled it, or no delivery succeeded for the failing "
        "window (`serve --webhook-disable-after`)."
    )
    failing_since: datetime | None = strawberry.field(
        description="Since when every attempt has failed; null while the last one succeeded."
    )
    created_at: datetime = strawberry.field(description="When it was registered: it takes the events after.")

    @classmethod
    def of(cls, endpoint: Endpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(endpoint.id),
            url=endpoint.url,
            events=None if endpoint.events is None else sorted(endpoint.events),
            description=endpoint.description,
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            failing_since=endpoint.failing_since,
            created_at=endpoint.created_at,
        )


@strawberry.type(
    description="An event an endpoint did not take at the first attempt (or one of the same saga "
    "waiting behind it), with its last attempt. Events taken at once are not listed."
)
class WebhookDelivery:
    event_id: str = strawberry.field(description="The event's id, sent as `webhook-id` on every attempt.")
    event_type: str = strawberry.field(description="The journal event's type (docs/events.md).")
    saga_id: strawberry.ID = strawberry.field(description="The saga the event belongs to.")
    cursor: str = strawberry.field(description="The event's place in the journal (as in the event's data).")
    status: WebhookDeliveryStatus = strawberry.field(  # type: ignore[valid-type]
        description="Where the delivery is."
    )
    attempts: int = strawberry.field(
        description="Attempts since it was stored or last redelivered; 0 while it waits behind an "
        "earlier event of its saga."
    )
    response_code: int | None = strawberry.field(description="The last attempt's HTTP status, if any.")
    latency_ms: int | None = strawberry.field(description="How long the last attempt took, in ms.")
    error: str | None = strawberry.field(description="Why the last attempt failed.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When it is tried again; null once it succeeded or failed, or while it waits "
        "behind an earlier event of its saga."
    )
    updated_at: datetime = strawberry.field(description="When the delivery last changed.")

    @classmethod
    def of(cls, delivery: Delivery) -> WebhookDelivery:
        return cls(
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            saga_id=strawberry.ID(delivery.saga_id),
            cursor=encode_cursor(delivery.position),
            status=DeliveryStatus(delivery.status),
            attempts=delivery.attempts,
            response_code=delivery.response_code,
            latency_ms=delivery.latency_ms,
            error=delivery.error,
            next_attempt_at=delivery.next_attempt_at,
            updated_at=delivery.updated_at,
        )


EVENTS_DESCRIPTION = "The journal event types to send (docs/events.md); null or left out: every type."


@strawberry.input(description="A new webhook endpoint.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="An http or https URL.")
    events: list[str] | None = strawberry.field(default=None, description=EVENTS_DESCRIPTION)
    description: str | None = strawberry.field(
        default=None, description=f"A note for admins, at most {MAX_DESCRIPTION} characters."
    )


@strawberry.input(description="Changes to a webhook endpoint; what is left out stays as it is.")
class UpdateWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description="The endpoint to change.")
    url: str | None = strawberry.field(default=None, description="A new URL; left out: unchanged.")
    events: list[str] | None = strawberry.field(
        default=strawberry.UNSET,
        description="The journal event types to send; null: every type; left out: unchanged.",
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="A new description; null clears it; left out: unchanged."
    )
    enabled: bool | None = strawberry.field(
        default=None,
        description="Enable (which also forgets a failing streak) or disable it; left out: unchanged. "
        "Events committed while it was disabled are sent once it is enabled again.",
    )
    rotate_secret: bool = strawberry.field(
        default=False, description="Make a new signing secret, answered once in this payload."
    )


@strawberry.input(description="The webhook endpoint to delete, with its stored deliveries.")
class DeleteWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description="The endpoint to delete.")


@strawberry.input(description="Failed deliveries to send again, under their same webhook-id.")
class RedeliverWebhooksInput:
    endpoint_id: strawberry.ID = strawberry.field(description="The endpoint whose deliveries to resend.")
    event_id: str | None = strawberry.field(
        default=None, description="Only this event's failed delivery; left out: every failed one."
    )


@strawberry.type(description="The answer to creating or updating a webhook endpoint.")
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(
        default=None, description="The endpoint as it is now; null when refused."
    )
    secret: str | None = strawberry.field(
        default=None,
        description="The signing secret (`whsec_…`), answered only when it is made: on creation and "
        "rotation. It cannot be read back.",
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Why the input was refused; empty when it was taken."
    )


@strawberry.type(description="The answer to deleting a webhook endpoint.")
class DeleteWebhookEndpointPayload:
    deleted_id: strawberry.ID | None = strawberry.field(
        default=None, description="The id of the endpoint deleted; null when refused."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Why the input was refused; empty when it was taken."
    )


@strawberry.type(description="The answer to redeliverWebhooks.")
class RedeliverWebhooksPayload:
    redelivered: int | None = strawberry.field(
        default=None,
        description="How many failed deliveries were made pending again; each saga's go out in journal "
        "order, after its earlier events.",
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Why the input was refused; empty when it was taken."
    )


def _unknown(field: str) -> Problem:
    return Problem(ProblemCode.UNKNOWN_WEBHOOK_ENDPOINT, field, "no such webhook endpoint")


async def _url_problems(webhooks: Webhooks, url: str) -> list[Problem]:
    if (problem := url_problem(url)) is not None:
        return [Problem(ProblemCode.INVALID_URL, "url", problem)]
    if (problem := await reach_problem(url, webhooks.policy.reach)) is not None:
        return [Problem(ProblemCode.URL_NOT_ALLOWED, "url", problem)]
    return []


def _events(events: Sequence[str] | None) -> tuple[frozenset[str] | None, list[Problem]]:
    if events is None:
        return None, []
    if not events:
        message = "events must name at least one event type; leave it out for every type"
        return None, [Problem(ProblemCode.REQUIRED, "events", message)]
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        message = f"unknown event types {', '.join(unknown)}; the types are {', '.join(sorted(EVENT_TYPES))}"
        return None, [Problem(ProblemCode.UNKNOWN_EVENT_TYPE, "events", message)]
    return frozenset(events), []


def _description_problems(description: str | None) -> list[Problem]:
    if description is not None and len(description) > MAX_DESCRIPTION:
        message = f"description is longer than {MAX_DESCRIPTION} characters"
        return [Problem(ProblemCode.TOO_LONG, "description", message)]
    return []


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="Every webhook endpoint, oldest first (admins).")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        return [WebhookEndpoint.of(e) for e in await service(info).webhooks.store.endpoints()]

    @strawberry.field(
        description="An endpoint's deliveries that did not go through at once, latest event first; at "
        "most 100 a page."
    )
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: Annotated[strawberry.ID, strawberry.argument(description="The endpoint.")],
        status: Annotated[
            list[WebhookDeliveryStatus] | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only deliveries in one of these statuses; all without."),
        ] = None,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> UncountedConnection[WebhookDelivery]:
        asked = window(first, _position(after, "after"), last, _position(before, "before"))
        store = service(info).webhooks.store
        if await store.endpoint(str(endpoint_id)) is None:
            raise client_error(
                "no such webhook endpoint", ClientErrorCode.BAD_USER_INPUT, argument="endpointId"
            )
        statuses = [DeliveryStatus(s).value for s in status or ()]
        rows = await store.page(str(endpoint_id), statuses, asked)
        edges = [Edge(cursor=encode_cursor(row.position), node=WebhookDelivery.of(row)) for row in rows]
        return UncountedConnection.of(edges, asked)


def _position(cursor: str | None, argument: str) -> int | None:
    """The journal position a delivery's cursor, the value of `argument`, stands for. Raises
    BAD_USER_INPUT (naming `argument`) for any other text."""
    try:
        return None if cursor is None else decode_cursor(cursor)
    except ValueError:
        raise client_error(
            "invalid cursor: pass a cursor this API returned",
            ClientErrorCode.BAD_USER_INPUT,
            argument=argument,
        ) from None


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Register a webhook endpoint: the journal events it takes are POSTed to it from now "
        "on, signed with the secret this payload answers once (admins)."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: Input[CreateWebhookEndpointInput]
    ) -> WebhookEndpointPayload:
        webhooks = service(info).webhooks
        events, problems = _events(input.events)
        problems += _description_problems(input.description)
        problems += await _url_problems(webhooks, input.url)
        if problems:
            return WebhookEndpointPayload(user_errors=user_errors(problems))
        secret = new_secret()
        endpoint = await webhooks.store.create(input.url, events, input.description, secret, webhooks.now())
        webhooks.changed()
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.of(endpoint), secret=secret)

    @strawberry.mutation(
        description="Change an endpoint's URL, events or description, enable or disable it, or rotate its "
        "secret (admins)."
    )
    async def update_webhook_endpoint(
        self, info: Info, input: Input[UpdateWebhookEndpointInput]
    ) -> WebhookEndpointPayload:
        webhooks = service(info).webhooks
        endpoint = await webhooks.store.endpoint(str(input.id))
        if endpoint is None:
            return WebhookEndpointPayload(user_errors=user_errors([_unknown("id")]))
        changes: dict[str, Any] = {}
        problems: list[Problem] = []
        if input.url is not None:
            problems += await _url_problems(webhooks, input.url)
            changes["url"] = input.url
        if input.events is not strawberry.UNSET:
            changes["events"], found = _events(input.events)
            problems += found
        if input.description is not strawberry.UNSET:
            problems += _description_problems(input.description)
            changes["description"] = input.description
        if problems:
            return WebhookEndpointPayload(user_errors=user_errors(problems))
        if input.enabled is True:
            changes.update(enabled=True, disabled_reason=None, failing_since=None)
        elif input.enabled is False:
            changes.update(enabled=False, disabled_reason="disabled by an admin")
        secret = new_secret() if input.rotate_secret else None
        if secret is not None:
            changes["secret"] = secret
        changed = await webhooks.store.change(endpoint.id, changes)
        if changed is None:
            return WebhookEndpointPayload(user_errors=user_errors([_unknown("id")]))
        webhooks.changed()
        return WebhookEndpointPayload(endpoint=WebhookEndpoint.of(changed), secret=secret)

    @strawberry.mutation(
        description="Delete an endpoint, with its deliveries; nothing more is sent to it (admins)."
    )
    async def delete_webhook_endpoint(
        self, info: Info, input: Input[DeleteWebhookEndpointInput]
    ) -> DeleteWebhookEndpointPayload:
        webhooks = service(info).webhooks
        if not await webhooks.store.delete(str(input.id)):
            return DeleteWebhookEndpointPayload(user_errors=user_errors([_unknown("id")]))
        webhooks.changed()
        return DeleteWebhookEndpointPayload(deleted_id=input.id)

    @strawberry.mutation(
        description="Send an endpoint's failed deliveries again (or one of them), each saga's in journal "
        "order, with the same webhook-id as before (operators and admins)."
    )
    async def redeliver_webhooks(
        self, info: Info, input: Input[RedeliverWebhooksInput]
    ) -> RedeliverWebhooksPayload:
        webhooks = service(info).webhooks
        if await webhooks.store.endpoint(str(input.endpoint_id)) is None:
            return RedeliverWebhooksPayload(user_errors=user_errors([_unknown("endpointId")]))
        count = await webhooks.store.redeliver(str(input.endpoint_id), webhooks.now(), input.event_id)
        if input.event_id is not None and count == 0:
            problem = Problem(
                ProblemCode.NOT_FAILED, "eventId", "this endpoint has no failed delivery of that event"
            )
            return RedeliverWebhooksPayload(user_errors=user_errors([problem]))
        return RedeliverWebhooksPayload(redelivered=count)
