"""The operator's console: `/` and the same data as JSON at `/api/v1/status`.

Queues (Bull layout written straight to the tests' Redis), providers and probes against the
local fake; the page is loaded in a real headless Chromium (Debian's `chromium`) at a phone's
width, its DOM and a screenshot checked. The alerting part of the console is exercised by
tests/test_alerting.py (rules, channels) and tests/test_alert_grouping.py (silences).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from provider_fake import FakeProcess  # noqa: E402

from helpers import wait_until  # noqa: E402
from test_queues import make_bull_queue, qredis  # noqa: E402,F401  (fixture)

TOKEN = "console-token-1234"


def console_config(qredis, fake) -> str:
    config = {
        "collectors": {"host": {"enabled": False}, "process": {"interval": "1s", "timeout": "1s"}},
        "server": {"auth": {"bearer_token": TOKEN}},
        "queues": {"redis": {"url": qredis.url}, "interval": "1s", "timeout": "1s", "prefixes": ["bull"],
                   "discovery": {"enabled": True, "interval": "1s"}},
        "providers": [
            {"name": "good", "url": f"{fake.url}/good", "currency": "EUR", "balances": [{"path": "", "value": "balance"}],
             "interval": "1s", "timeout": "1s"},
            {"name": "flaky", "url": f"{fake.url}/flaky", "currency": "BTC", "balances": [{"path": "", "value": "balance"}],
             "interval": "1s", "timeout": "1s"},
        ],
        "probes": [{"name": "app", "url": f"{fake.url}/health", "interval": "1s", "timeout": "1s"}],
    }
    return yaml.safe_dump(config, sort_keys=False)


def status(tt) -> dict:
    r = tt.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json", r.text[:300]
    return r.json()


@pytest.fixture
def console(qredis, start_telltale):
    make_bull_queue(qredis.r, "payments", wait=["1", "2", "3"], failed=2)
    make_bull_queue(qredis.r, "emails", paused=["4"], paused_flag="bull4")
    with FakeProcess() as fake:
        fake.set_route("/good", {"balance": 12.5})
        fake.set_route("/flaky", {"balance": 0.25})
        fake.set_route("/health", "ok")
        tt = start_telltale(console_config(qredis, fake))

        def ready() -> dict | None:
            s = status(tt)
            return s if len(s["queues"]) == 2 and len(s["balances"]) == 2 and s["probes"] else None

        wait_until(ready, 15, "queues, balances and probes on the console")
        # The flaky provider fails from now on: its last balance stays, marked stale.
        fake.set_route("/flaky", "oops", status=500)
        wait_until(lambda: any(b["stale"] for b in status(tt)["balances"]), 15, "the flaky provider's balance stale")
        yield tt


def test_status_json_and_page_show_every_source(console) -> None:
    tt = console
    s = status(tt)
    assert s["version"] and s["generatedAt"] > 0
    names = {c["name"] for c in s["collectors"]}
    assert {"process", "queues:default", "provider:good", "provider:flaky", "probe:app"} <= names
    assert next(c for c in s["collectors"] if c["name"] == "provider:flaky")["state"] == "failed"

    queues = {q["labels"]["queue"]: q for q in s["queues"]}
    assert s["queueCount"] == 2
    assert queues["payments"]["jobs"]["waiting"] == 3 and queues["payments"]["jobs"]["failed"] == 2
    assert queues["payments"]["paused"] is False and queues["emails"]["paused"] is True
    assert [q["labels"]["queue"] for q in s["queues"]] == ["payments", "emails"], "most waiting first"

    balances = {b["provider"]: b for b in s["balances"]}
    assert balances["good"] == {**balances["good"], "currency": "EUR", "balance": 12.5, "stale": False}
    assert balances["flaky"]["balance"] == 0.25 and balances["flaky"]["stale"] is True
    assert s["probes"] == [{"target": "app", "success": True, "statusCode": 200, "errorRatio": 0}]
    assert s.get("alerting") is None

    page = tt.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).text
    for text in ("Collectors", "Queues", "Provider balances", "Probes", "payments", "paused", "stale",
                 'http-equiv="refresh"', 'name="viewport"'):
        assert text in page, text
    assert "<script" not in page


def test_console_asks_for_the_configured_credentials(console) -> None:
    for path in ("/", "/api/v1/status"):
        assert console.get(path).status_code == 401
        assert console.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium not found: scripts/setup.sh installs Debian's chromium package", pytrace=False)
    return found


def test_page_in_headless_chromium_at_phone_width(qredis, start_telltale, tmp_path) -> None:
    """No credentials here: Chromium's command line cannot send an Authorization header."""
    make_bull_queue(qredis.r, "payments", wait=["1"], failed=1)
    config = yaml.safe_dump({"collectors": {"host": {"enabled": False}},
                             "queues": {"redis": {"url": qredis.url}, "interval": "1s", "timeout": "1s"}})
    tt = start_telltale(config)
    wait_until(lambda: tt.get("/api/v1/status").json()["queues"], 15, "the queue on the console")
    browser = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=390,844"]
    dom = subprocess.run(browser + ["--dump-dom", tt.url + "/"], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for text in ("<h2>Collectors</h2>", "<h2>Queues</h2>", "queues:default", "payments"):
        assert text in dom.stdout, (text, dom.stdout[:2000])
    shot = tmp_path / "console.png"
    run = subprocess.run(browser + [f"--screenshot={shot}", tt.url + "/"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (390, 844), (width, height)
    # Not a blank page: a screenshot of text and tables compresses far less than a plain one.
    assert len(png) > 5000, len(png)
    assert requests.get(tt.url + "/", timeout=10).status_code == 200
