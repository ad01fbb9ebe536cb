"""
rehook_sdk.integrations.flask through Flask's test client: each call a view makes reaches the fake exactly once,
the config is checked at startup, tests can swap in the in-memory recorder, and the client drains at exit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from rehook_sdk import ConfigurationError, SyncRehookClient
from rehook_sdk.integrations.flask import Rehook, get_rehook
from rehook_sdk.testing import FakeRehook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import flask_app


def config_for(fake: FakeRehook, **more: Any) -> dict[str, Any]:
    return {"REHOOK_API_KEY": fake.api_key, "REHOOK_API_SECRET": fake.api_secret, "REHOOK_BASE_URL": fake.url, **more}


@pytest.fixture
def app(threaded_fake: FakeRehook) -> Iterator[Flask]:
    app = flask_app.create_app(config_for(threaded_fake))
    yield app
    app.extensions["rehook"].close(timeout=5)


def test_the_example_apps_calls_reach_rehook_once(app: Flask, threaded_fake: FakeRehook) -> None:
    http = app.test_client()
    for i in range(20):
        answer = http.post("/signup", json={"user_id": f"u{i}", "referral_code": "ADV001"})
        assert answer.json == {"ok": True}
    assert http.post("/orders", json={"user_id": "u1", "total": 10}).json == {"rehook": "delivered", "reason": None}
    assert get_rehook_of(app).flush(timeout=10) == 0
    assert sorted(threaded_fake.customers) == sorted(f"u{i}" for i in range(20))
    names = sorted(event["event_name"] for event in threaded_fake.events)
    assert names == ["Order Completed"] + ["signup"] * 20


def get_rehook_of(app: Flask) -> SyncRehookClient:
    with app.app_context():
        return get_rehook()


def test_the_extension_property_and_the_accessor_give_the_same_client(app: Flask) -> None:
    extension = Rehook()
    with app.app_context():
        assert extension.client is get_rehook() is app.extensions["rehook"]


def test_tests_can_hand_the_app_the_in_memory_recorder() -> None:
    """REHOOK_CLIENT: a ready client, such as the fake's in-memory one: nothing leaves the process."""
    fake = FakeRehook(conversion_events={"signup"})
    recorder = fake.memory_sync_client()
    app = flask_app.create_app({"REHOOK_CLIENT": recorder})
    answer = app.test_client().post("/signup", json={"user_id": "u1", "referral_code": "ADV001"})
    assert answer.status_code == 200
    assert recorder.flush(timeout=10) == 0
    assert [event["source_id"] for event in fake.events] == ["u1"]
    recorder.close()


def test_bad_config_fails_at_startup(monkeypatch: pytest.MonkeyPatch, threaded_fake: FakeRehook) -> None:
    for variable in ("REHOOK_API_KEY", "REHOOK_API_SECRET"):
        monkeypatch.delenv(variable, raising=False)
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "credentials are missing"),
        (config_for(threaded_fake, REHOOK_SETTINGS={"concurency": 4}), "REHOOK_SETTINGS: .*concurency"),
        (config_for(threaded_fake, REHOOK_SETTINGS=["spool"]), "REHOOK_SETTINGS must be a dict"),
        (config_for(threaded_fake, REHOOK_SETTINGS={"concurrency": 0}), "concurrency"),
        ({"REHOOK_CLIENT": "not a client"}, "REHOOK_CLIENT must be a SyncRehookClient"),
    ]
    for config, message in cases:
        app = Flask(__name__)
        app.config.update(config)
        with pytest.raises(ConfigurationError, match=message):
            Rehook(app)


def test_get_rehook_in_an_app_without_the_extension_says_what_to_do() -> None:
    with Flask(__name__).app_context(), pytest.raises(RuntimeError, match=r"call Rehook\(app\)"):
        get_rehook()


EXITING = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[4])
    import flask_app

    app = flask_app.create_app({"REHOOK_API_KEY": sys.argv[1], "REHOOK_API_SECRET": sys.argv[2],
                                "REHOOK_BASE_URL": sys.argv[3]})
    http = app.test_client()
    for i in range(30):
        assert http.post("/signup", json={"user_id": f"u{i}", "referral_code": "ADV001"}).status_code == 200
    # no close(): the process just ends, as a dev server or a worker does
    """
)


def test_calls_left_when_the_process_exits_are_delivered(threaded_fake: FakeRehook) -> None:
    threaded_fake.delay_next(30, seconds=0.05)
    examples = str(Path(flask_app.__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", EXITING, threaded_fake.api_key, threaded_fake.api_secret, threaded_fake.url, examples],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(threaded_fake.events) == 30
    assert len(threaded_fake.customers) == 30


def test_flask_integration_without_the_extra_names_it() -> None:
    code = "import sys; sys.modules['flask'] = None; import rehook_sdk.integrations.flask"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert 'pip install "rehook-sdk[flask]"' in result.stderr
