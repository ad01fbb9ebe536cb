"""
A Flask app that sends identify/track from its views (rehook_sdk.integrations.flask).

    .venv/bin/pip install -q -e '.[flask]' && .venv/bin/python examples/flask_app.py
    curl -X POST localhost:5000/signup -H 'content-type: application/json' -d '{"user_id": "u1", "referral_code": "A1"}'

With no REHOOK_API_KEY/REHOOK_API_SECRET it also runs the fake Rehook and prints what it received when you stop
the server with Ctrl-C.
"""

# Fire and forget: the views do not wait for the handles identify()/track() return, except /orders.
# mypy: disable-error-code="unused-awaitable"

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, request

from rehook_sdk.integrations.flask import Rehook, get_rehook


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """
    The app, its Rehook client made from ``config`` (for tests) or from the environment.
    """
    app = Flask(__name__)
    app.config["REHOOK_SETTINGS"] = {"conversion_events": {"signup"}}
    app.config.update(config or {})
    Rehook(app)

    @app.post("/signup")
    def signup() -> dict[str, bool]:
        body = request.get_json()
        get_rehook().identify(body["user_id"], {"email": body.get("email")})
        if body.get("referral_code"):
            get_rehook().track("signup", {"referral_code": body["referral_code"]}, user_id=body["user_id"])
        return {"ok": True}

    @app.post("/orders")
    def order() -> dict[str, Any]:
        body = request.get_json()
        outcome = get_rehook().track("Order Completed", {"total": body["total"]}, user_id=body["user_id"]).result(10)
        return {"rehook": outcome.status.value, "reason": outcome.reason}

    return app


if __name__ == "__main__":
    if os.environ.get("REHOOK_API_KEY") is not None:
        create_app().run(port=int(os.environ.get("PORT", "5000")))
    else:
        from rehook_sdk.testing import FakeRehook

        with FakeRehook.in_thread(conversion_events={"signup"}) as fake:
            print(f"Using the embedded fake Rehook at {fake.url}")
            app = create_app({"REHOOK_API_KEY": fake.api_key, "REHOOK_API_SECRET": fake.api_secret,
                              "REHOOK_BASE_URL": fake.url})  # fmt: skip
            try:
                app.run(port=int(os.environ.get("PORT", "5000")))
            finally:
                client = app.extensions["rehook"]
                client.close(timeout=5)
                print("The fake Rehook received:")
                for r in fake.requests:
                    print(f"  {r.method} {r.path} -> {r.status} {r.json}")
