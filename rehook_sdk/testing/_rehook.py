"""
The Rehook the fake simulates: customers with their referral codes, events, conversion events that need the
advocate's referral code, and the read endpoints (a customer, a code's owner, an advocate's referrals, and the
fake's own lists). Each endpoint takes the path's match and the JSON body and answers as Rehook does (its error
body included); `FakeRehook` serves them over HTTP, with faults, recording and credentials.
"""

from __future__ import annotations

import itertools
import secrets
import string
from collections.abc import Callable, Collection, Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

from aiohttp import web

__all__ = ["SimulatedRehook", "error"]


def error(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body = {"code": code, "message": message, "details": details, "request_id": "req_" + secrets.token_hex(8)}
    return web.json_response(body, status=status)


class SimulatedRehook:
    """
    Rehook's state and rules, as far as the fake knows them.

    Args:
        conversion_events: Event names that need ``metadata.referral_code``.
        record: Keep every event in `events` (off for long soak runs).
    """

    def __init__(self, conversion_events: Iterable[str], record: bool) -> None:
        self.conversion_events = frozenset(conversion_events)
        self.record = record
        self.customers: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        # Indexes, so that every request costs O(1) however many customers there are: referral code -> owner's
        # source_id, and advocate's source_id -> the source_ids of the friends it referred (in order).
        self._code_owner: dict[str, str] = {}
        self._referred: dict[str, dict[str, None]] = {}

    async def list_events(self, request: web.Request) -> web.Response:
        return _page(request, self.events)

    async def list_customers(self, request: web.Request) -> web.Response:
        return _page(request, self.customers.values(), self.public)

    def _new_code(self) -> str:
        while True:
            code = "".join(secrets.choice(string.ascii_uppercase) for _ in range(6))
            if code not in self._code_owner:
                return code

    def _owner(self, code: Any) -> dict[str, Any] | None:
        owner = self._code_owner.get(code) if isinstance(code, str) else None
        return self.customers.get(owner) if owner is not None else None

    def _set_code(self, customer: dict[str, Any], code: str) -> None:
        old = customer.get("referral_code")
        if old is not None and self._code_owner.get(old) == customer["source_id"]:
            del self._code_owner[old]
        customer["referral_code"] = code
        self._code_owner[code] = customer["source_id"]

    async def identify(self, match: MappingABC[str, str], body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("source_id"), str) or not body["source_id"]:
            return error(400, "INVALID_REQUEST", "source_id is required")
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict):
            return error(400, "INVALID_REQUEST", "metadata must be an object")
        code = body.get("referral_code")
        if code is not None and not isinstance(code, str):
            return error(400, "INVALID_REQUEST", "referral_code must be a string or null")
        source_id: str = body["source_id"]
        if code is not None:
            owner = self._owner(code)
            if owner is not None and owner["source_id"] != source_id:
                return error(400, "REFERRAL_CODE_TAKEN", f"referral code {code!r} belongs to another customer")
        customer = self.customers.get(source_id)
        if customer is None:
            customer = self.customers[source_id] = {
                "id": f"cust_{next(self._ids)}",
                "source_id": source_id,
                "metadata": {},
                "referral_code": None,
                "referred_by": None,
            }
            self._set_code(customer, code or self._new_code())
        elif code is not None:
            self._set_code(customer, code)
        customer["metadata"].update(metadata)
        return web.json_response(customer)

    async def track(self, match: MappingABC[str, str], body: Any) -> web.Response:
        if not isinstance(body, dict):
            return error(400, "INVALID_REQUEST", "a JSON object is required")
        name, source_id, metadata = body.get("event_name"), body.get("source_id"), body.get("metadata", {})
        if not isinstance(name, str) or not name:
            return error(400, "INVALID_REQUEST", "event_name is required")
        if not isinstance(source_id, str) or not source_id:
            return error(400, "INVALID_REQUEST", "source_id is required")
        if not isinstance(metadata, dict):
            return error(400, "INVALID_REQUEST", "metadata must be an object")
        code = metadata.get("referral_code")
        if name in self.conversion_events and not code:
            return error(400, "MISSING_REFERRAL_CODE", f"{name!r} is a conversion event: referral_code is required")
        if code and name in self.conversion_events:
            advocate = self._owner(code)
            friend = self.customers.get(source_id)
            if advocate is not None and friend is not None and advocate is not friend:
                if friend["referred_by"] is not None:
                    self._referred.get(friend["referred_by"], {}).pop(source_id, None)
                friend["referred_by"] = advocate["source_id"]
                self._referred.setdefault(advocate["source_id"], {})[source_id] = None
        event = {"id": f"evt_{next(self._ids)}", "event_name": name, "source_id": source_id, "metadata": metadata}
        if self.record:
            self.events.append(event)
        return web.json_response({"status": "ok", "event": event})

    async def check_auth(self, match: MappingABC[str, str], body: Any) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_customer(self, match: MappingABC[str, str], body: Any) -> web.Response:
        customer = self.customers.get(match["source_id"])
        if customer is None:
            return error(404, "NOT_FOUND_CUSTOMER", "no customer with that source_id")
        return web.json_response(self.public(customer))

    async def validate_code(self, match: MappingABC[str, str], body: Any) -> web.Response:
        code = match["code"]
        owner = self._owner(code)
        if owner is None:
            return error(404, "NOT_FOUND_CODE", f"referral code {code!r} does not exist")
        return web.json_response(self.public(owner))

    async def referrals(self, match: MappingABC[str, str], body: Any) -> web.Response:
        source_id = match["source_id"]
        referred = [self.public(self.customers[friend]) for friend in self._referred.get(source_id, {})]
        if not referred:
            return error(404, "NOT_FOUND_REFERRALS", "no successful referrals")
        return web.json_response(referred)

    def public(self, customer: dict[str, Any]) -> dict[str, Any]:
        referrals = len(self._referred.get(customer["source_id"], {}))
        return {
            "id": customer["id"],
            "source_id": customer["source_id"],
            "metadata": customer["metadata"],
            "referral_code": customer["referral_code"],
            "referral_count": referrals,
            "referral_link": f"https://rehook.example/r/{customer['referral_code']}",
        }


def _page(request: web.Request, items: Collection[Any], view: Callable[[Any], Any] | None = None) -> web.Response:
    # ?offset=0&limit=100 (at most 1000): {"total", "offset", "limit", "items"}, in the order they were recorded.
    try:
        offset = max(0, int(request.query.get("offset", "0")))
        limit = min(1000, max(1, int(request.query.get("limit", "100"))))
    except ValueError:
        return error(400, "INVALID_REQUEST", "offset and limit must be whole numbers")
    listed = list(itertools.islice(items, offset, offset + limit))
    page = [view(item) for item in listed] if view is not None else listed
    return web.json_response({"total": len(items), "offset": offset, "limit": limit, "items": page})
