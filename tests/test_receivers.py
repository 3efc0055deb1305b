"""End-to-end tests of the receivers added by migration v4: PagerDuty's Events API v2 (a
local fake replaying its documented answers, tests/fakes/pagerduty_fake.py), email over
SMTP (a local aiosmtpd sink: plain for a relay, STARTTLS and implicit TLS with a
self-signed certificate and AUTH) and a real Alertmanager (Debian's
``prometheus-alertmanager``) routing to the local chat receiver.

Reuses tests/test_alerting.py's harness: a fresh database per test, the SQL metric
``tt_level{svc}`` moved across thresholds with ``h.set_level``.

    TELLTALE_RUN_DIR=/tmp/tt-atests TELLTALE_PG_PORT=55832 TELLTALE_REDIS_PORT=56779 \\
        bash scripts/services.sh start
    TELLTALE_RUN_DIR=/tmp/tt-atests .venv/bin/python -m pytest tests/test_receivers.py -q
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import shutil
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from pagerduty_fake import PagerDutyFake  # noqa: E402

import helpers  # noqa: E402
from conftest import find_free_port  # noqa: E402
from test_alerting import (FIRING_AFTER, SECRET, Harness, h, rfc3339, rx, sql_literal,  # noqa: E402,F401 - fixtures
                           wait_until)

ROUTING_KEY = SECRET + "R" * (32 - len(SECRET))  # PagerDuty's keys are 32 characters


def add_receiver(h: Harness, name: str, kind: str, secret: str, **columns: str | None) -> None:
    """A channel whose secret is in an environment variable, with migration v4's columns."""
    env_name = "TELLTALE_CHANNEL_" + name.upper().replace("-", "_")
    h.env[env_name] = secret
    names = ", ".join(["name", "kind", "url_env", *columns])
    values = ", ".join(sql_literal(v) for v in [name, kind, env_name, *columns.values()])
    h.sql(f"INSERT INTO telltale_channels ({names}) VALUES ({values})")


def exposed(h: Harness, tt) -> dict[str, str]:
    """Everything a secret must never appear in."""
    return {"/metrics": tt.metrics(), "/": tt.get("/").text, "logs": tt.logs(),
            "outbox": str(h.notifications())}


# ------------------------------------------------------------------ PagerDuty


@pytest.fixture
def pd() -> Iterator[PagerDutyFake]:
    with PagerDutyFake() as fake:
        yield fake


def test_pagerduty_trigger_then_resolve_with_one_dedup_key(h: Harness, pd: PagerDutyFake) -> None:
    add_receiver(h, "pager", "pagerduty", ROUTING_KEY, endpoint=pd.endpoint)
    h.add_rule("level_high", 10, channel="pager", severity="critical", description="The API level is too high")
    pd.throttle(times=1)  # the first answer is a 429: retried, then accepted
    h.set_level(20)
    tt = h.start()
    trigger = pd.wait_for(lambda events: [e for e in events if e.accepted], FIRING_AFTER + 10, "a trigger")[0]
    assert [e.status for e in pd.events()] == [429, 202]
    body = trigger.body
    assert body["event_action"] == "trigger" and body["routing_key"] == ROUTING_KEY
    payload = body["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "production"
    assert "level_high" in payload["summary"] and "FIRING" in payload["summary"]
    assert any("svc=\"api\"" in line and "20" in line for line in payload["custom_details"]["firing"]), payload
    assert payload["custom_details"]["description"] == "The API level is too high"
    rfc3339(payload["timestamp"])

    h.set_level(1)
    resolve = pd.wait_for(lambda events: [e for e in events if e.accepted and e.body["event_action"] == "resolve"],
                          FIRING_AFTER, "a resolve")[0]
    assert resolve.body["dedup_key"] == body["dedup_key"], "trigger and resolve name one incident"
    assert SECRET not in body["dedup_key"]
    h.quiet(tt)
    assert [e.body["event_action"] for e in pd.accepted()] == ["trigger", "resolve"]
    assert all(row["delivered"] for row in h.notifications())
    helpers.wait_for(tt, lambda s: s.get("telltale_notifications_total", channel="pager", outcome="rate_limited") == 1
                     and s.get("telltale_notifications_total", channel="pager", outcome="delivered") == 2,
                     10, "one 429 and two deliveries counted")
    for where, text in exposed(h, tt).items():
        assert SECRET not in text, f"the routing key appears in {where}"


def test_pagerduty_invalid_event_is_a_permanent_failure(h: Harness, pd: PagerDutyFake) -> None:
    # A 31-character key: PagerDuty answers 400 "invalid event", which no retry changes.
    add_receiver(h, "pager", "pagerduty", ROUTING_KEY[:-1], endpoint=pd.endpoint)
    h.add_rule("level_high", 10, channel="pager")
    h.set_level(20)
    tt = h.start()
    pd.wait_for(lambda events: events, FIRING_AFTER, "an event")
    wait_until(lambda: h.notifications()[0]["failed"], FIRING_AFTER, "the row failed for good")
    row = h.notifications()[0]
    assert row["attempts"] == 1 and row["last_error"] == "HTTP 400", row
    assert [e.status for e in pd.events()] == [400]
    helpers.wait_for(tt, lambda s: s.get("telltale_notification_channel_failing", channel="pager") == 1, 10,
                     "the channel marked failing")


def test_pagerduty_test_notify_and_invalid_rows(h: Harness, pd: PagerDutyFake) -> None:
    add_receiver(h, "pager", "pagerduty", ROUTING_KEY, endpoint=pd.endpoint)
    add_receiver(h, "pager-bad-endpoint", "pagerduty", ROUTING_KEY, endpoint="file:///etc/passwd")
    add_receiver(h, "pager-bad-key", "pagerduty", "has spaces " + SECRET)
    add_receiver(h, "chat-with-endpoint", "slack", "https://hooks.example/" + SECRET, endpoint=pd.endpoint)
    r = h.cli("test-notify", "pager")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "delivered, HTTP 202" in r.stdout
    assert pd.accepted()[0].body["payload"]["severity"] == "info"
    for name, problem in (("pager-bad-endpoint", "endpoint must be"), ("pager-bad-key", "routing key"),
                          ("chat-with-endpoint", "pagerduty channels only")):
        r = h.cli("test-notify", name)
        assert r.returncode == 1 and problem in r.stdout + r.stderr, r.stdout + r.stderr
        assert SECRET not in r.stdout + r.stderr


# ---------------------------------------------------------------------- email


class SMTPSink:
    """aiosmtpd on a free loopback port: `none` (plain, no AUTH, a relay), `starttls`
    (STARTTLS required, then AUTH) or `smtps` (TLS from the first byte, then AUTH).
    Recipients starting with `refuse` get 550, `later` 451 the first time."""

    def __init__(self, mode: str, cert: Path | None = None, key: Path | None = None) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[dict[str, Any]] = []
        self.refusals: list[str] = []
        self.logins: list[tuple[str, str]] = []
        self._lock = threading.Condition()
        self._later_seen: set[str] = set()
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd
                with sink._lock:
                    if address.startswith("refuse"):
                        sink.refusals.append(f"550 {address}")
                        return "550 5.1.1 mailbox unavailable"
                    if address.startswith("later") and address not in sink._later_seen:
                        sink._later_seen.add(address)
                        sink.refusals.append(f"451 {address}")
                        return "451 4.3.0 try again later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd
                with sink._lock:
                    sink.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                          "data": envelope.original_content,
                                          "tls": server.transport.get_extra_info("ssl_object") is not None})
                    sink._lock.notify_all()
                return "250 2.0.0 queued"

        def authenticator(server, session, envelope, mechanism, auth_data):
            if isinstance(auth_data, LoginPassword):
                with sink._lock:
                    sink.logins.append((auth_data.login.decode(), auth_data.password.decode()))
                return AuthResult(success=auth_data.password.decode() == SECRET)
            return AuthResult(success=False)

        kwargs: dict[str, Any] = {}
        if mode != "none":
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert), str(key))
            kwargs.update(authenticator=authenticator, auth_required=True)
            if mode == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                # TLS from the first byte: aiosmtpd counts only STARTTLS as TLS for AUTH.
                kwargs.update(ssl_context=context, auth_require_tls=False)
        self.port = find_free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def wait_messages(self, n: int, timeout: float = FIRING_AFTER) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.messages) < n:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"SMTP sink: {len(self.messages)} of {n} messages after {timeout}s " \
                                      f"(refusals {self.refusals}, logins {len(self.logins)})"
                self._lock.wait(min(remaining, 0.2))
            return list(self.messages)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, in a channel directory (as a CA file may only be)."""
    directory = tmp_path / "channels"
    directory.mkdir()
    cert, key = directory / "smtp-ca.pem", tmp_path / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def parse_mail(raw: bytes) -> tuple[email.message.EmailMessage, str, str]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative", message["Content-Type"]
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return message, plain, html


@pytest.mark.parametrize("mode", ["none", "starttls", "smtps"])
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # smtps: TLS all the same
def test_email_firing_and_resolved(h: Harness, certificate: tuple[Path, Path], mode: str) -> None:
    cert, key = certificate
    sink = SMTPSink(mode, cert, key)
    try:
        scheme, credentials = ("smtps", f"telltale:{SECRET}@") if mode == "smtps" else ("smtp", "")
        if mode == "starttls":
            credentials = f"telltale:{SECRET}@"
        add_receiver(h, "mail", "email", f"{scheme}://{credentials}127.0.0.1:{sink.port}",
                     email_from="telltale@example.com", email_to="oncall@example.com, ops@example.org",
                     smtp_tls="none" if mode == "none" else None, ca_file=None if mode == "none" else str(cert))
        h.add_rule("level_high", 10, channel="mail", severity="critical",
                   description="Level <b>too</b> high & rising\r\nBcc: intruder@example.net")
        h.set_level(20)
        tt = h.start(alerting={"channel_file_dir": str(cert.parent)})
        try:
            first = sink.wait_messages(1)[0]
        except AssertionError as e:
            raise AssertionError(f"{e}\noutbox: {h.notifications()}\n{tt.logs()[-3000:]}") from None
        assert first["from"] == "telltale@example.com"
        assert first["to"] == ["oncall@example.com", "ops@example.org"]
        assert first["tls"] == (mode != "none")
        if mode != "none":
            assert sink.logins == [("telltale", SECRET)]
        message, plain, html = parse_mail(first["data"])
        assert message["Subject"] == "[FIRING] level_high (production, critical)"
        assert message["From"] == "Telltale <telltale@example.com>"
        assert message["To"] == "oncall@example.com, ops@example.org"
        assert message["Bcc"] is None
        assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@example.com>")
        sent = email.utils.parsedate_to_datetime(message["Date"])
        assert abs((datetime.now(timezone.utc) - sent).total_seconds()) < 600
        for text, condition in ((plain, "tt_level > 10"), (html, "tt_level &gt; 10")):
            assert "level_high" in text and "svc=api" in text and condition in text and "20" in text
        assert "Level <b>too</b> high & rising" in plain
        assert "Level &lt;b&gt;too&lt;/b&gt; high &amp; rising" in html and "<b>too" not in html

        h.set_level(1)
        second = sink.wait_messages(2)[1]
        resolved, plain, _ = parse_mail(second["data"])
        assert resolved["Subject"] == "[RESOLVED] level_high (production, critical)"
        assert resolved["Message-ID"] != message["Message-ID"]
        assert "Resolved (1):" in plain
        h.quiet(tt)
        assert len(sink.messages) == 2
        rows = h.notifications()
        assert all(row["delivered"] for row in rows), rows
        for where, text in exposed(h, tt).items():
            assert SECRET not in text, f"the SMTP password appears in {where}"
    finally:
        sink.stop()


def test_email_reply_codes(h: Harness) -> None:
    """A 4xx reply is retried, a 5xx fails the row for good; the reply is the row's error."""
    sink = SMTPSink("none")
    try:
        for name, to in (("mail-later", "later@example.com"), ("mail-refused", "refuse@example.com")):
            add_receiver(h, name, "email", f"smtp://127.0.0.1:{sink.port}", email_from="telltale@example.com",
                         email_to=to, smtp_tls="none")
            h.add_rule(f"r-{name}", 10, channel=name)
        h.set_level(20)
        tt = h.start()
        later = sink.wait_messages(1, timeout=FIRING_AFTER + 10)[0]
        assert later["to"] == ["later@example.com"]
        wait_until(lambda: all(r["delivered"] or r["failed"] for r in h.notifications()), FIRING_AFTER + 10,
                   "both rows settled")
        rows = {r["channel"]: r for r in h.notifications()}
        assert rows["mail-later"]["delivered"] and rows["mail-later"]["attempts"] == 2, rows
        assert rows["mail-refused"]["failed"] and rows["mail-refused"]["attempts"] == 1, rows
        assert rows["mail-refused"]["last_error"].startswith("SMTP 550"), rows
        helpers.wait_for(tt, lambda s: s.get("telltale_notification_channel_failing", channel="mail-refused") == 1
                         and s.get("telltale_notifications_total", channel="mail-later", outcome="retried") == 1, 10,
                         "the refusal and the retry counted")
    finally:
        sink.stop()


def test_email_settings_are_validated(h: Harness) -> None:
    url = f"smtps://telltale:{SECRET}@mail.example.com"
    add_receiver(h, "no-to", "email", url, email_from="telltale@example.com")
    add_receiver(h, "bad-to", "email", url, email_from="telltale@example.com", email_to="a@example.com\r\nBcc: x@y.z")
    add_receiver(h, "plain-smtps", "email", url, email_from="telltale@example.com", email_to="a@example.com",
                 smtp_tls="none")
    add_receiver(h, "outside-ca", "email", url, email_from="telltale@example.com", email_to="a@example.com",
                 ca_file="/etc/ssl/certs/ca-certificates.crt")
    for name, problem in (("no-to", "email_to"), ("bad-to", "email_to"), ("plain-smtps", "smtp_tls"),
                          ("outside-ca", "ca_file must be a file below")):
        r = h.cli("test-notify", name)
        assert r.returncode == 1 and problem in r.stdout + r.stderr, (name, r.stdout + r.stderr)
        assert SECRET not in r.stdout + r.stderr


# --------------------------------------------------------------- Alertmanager


class Alertmanager:
    """Debian's prometheus-alertmanager on a free loopback port, clustering off, routing
    every alert to ``webhook_url`` at once (group_wait 0s)."""

    def __init__(self, tmp_path: Path, webhook_url: str) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            pytest.fail("prometheus-alertmanager is not installed (scripts/setup.sh installs it)")
        config = {
            "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "0s", "group_interval": "1s",
                      "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
        }
        directory = tmp_path / "alertmanager"
        directory.mkdir()
        (directory / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (directory / "log").open("w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={directory / 'alertmanager.yml'}", f"--storage.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=debug"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = directory / "log"
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=2).status_code == 200, 30, "Alertmanager ready")

    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts not resolved."""
        r = requests.get(self.url + "/api/v2/alerts", timeout=5)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def alertmanager(tmp_path: Path, rx) -> Iterator[Alertmanager]:
    am = Alertmanager(tmp_path, rx.url_for("/am-webhook"))
    yield am
    am.stop()


def test_alertmanager_lists_and_resolves_the_alert(h: Harness, alertmanager: Alertmanager) -> None:
    # Two URLs: the real Alertmanager (with credentials it ignores, a secret all the same) and
    # one where nothing listens. One accepting is enough.
    dead = f"http://127.0.0.1:{find_free_port()}"
    live = alertmanager.url.replace("http://", f"http://telltale:{SECRET}@")
    add_receiver(h, "am", "alertmanager", f"{live}, {dead}")
    h.add_rule("level_high", 10, channel="am", severity="critical", description="The API level is too high")
    h.set_level(20)
    tt = h.start()

    def listed() -> dict[str, Any]:
        alerts = [a for a in alertmanager.alerts() if a["labels"].get("alertname") == "level_high"]
        assert len(alerts) == 1, alerts
        return alerts[0]

    alert = wait_until(listed, FIRING_AFTER + 10, "Alertmanager lists level_high")
    assert alert["labels"] == {"alertname": "level_high", "severity": "critical", "environment": "production",
                               "svc": "api", "target": "main"}, alert["labels"]
    assert alert["annotations"]["description"] == "The API level is too high"
    assert alert["annotations"]["value"] == "20" and alert["annotations"]["threshold"] == "tt_level > 10"
    assert alert["status"]["state"] == "active"
    starts, ends = rfc3339(alert["startsAt"]), rfc3339(alert["endsAt"])
    assert 120 < (ends - starts).total_seconds() < 600, "valid for 4 × max(resend delay, interval)"
    assert alert["generatorURL"] == "http://example.test/telltale"
    # Alertmanager routes it on: its webhook reaches the local receiver.
    firing = h.rx.wait_for(lambda rx: [r for r in rx.requests("/am-webhook") if r.json["status"] == "firing"],
                           FIRING_AFTER + 10, "Alertmanager's firing notification")[0]
    assert firing.json["alerts"][0]["labels"]["svc"] == "api"

    h.set_level(1)
    wait_until(lambda: not [a for a in alertmanager.alerts() if a["labels"].get("alertname") == "level_high"],
               FIRING_AFTER + 10, "Alertmanager no longer lists the resolved alert")
    resolved = h.rx.wait_for(lambda rx: [r for r in rx.requests("/am-webhook") if r.json["status"] == "resolved"],
                             FIRING_AFTER + 10, "Alertmanager's resolved notification")[0]
    assert resolved.json["alerts"][0]["labels"]["alertname"] == "level_high"

    assert h.notifications() == [], "Alertmanager channels do not go through the outbox"
    helpers.wait_for(tt, lambda s: (s.get("telltale_notifications_total", channel="am", outcome="delivered") or 0) >= 2
                     and (s.get("telltale_notifications_total", channel="am", outcome="retried") or 0) >= 2, 10,
                     "per-URL outcomes counted: the live one delivered, the dead one retried")
    assert helpers.scrape(tt).get("telltale_notification_channel_failing", channel="am") == 0
    for where, text in exposed(h, tt).items():
        assert SECRET not in text, f"the Alertmanager URL's password appears in {where}"
        assert dead not in text, f"an Alertmanager URL appears in {where}"


def test_alertmanager_test_notify(h: Harness, alertmanager: Alertmanager) -> None:
    add_receiver(h, "am", "alertmanager", alertmanager.url + "/")
    r = h.cli("test-notify", "am")
    assert r.returncode == 0, r.stdout + r.stderr
    alert = wait_until(lambda: [a for a in alertmanager.alerts() if a["labels"]["alertname"] == "telltale-test"][0],
                       10, "the test alert listed")
    assert alert["labels"]["severity"] == "info"
    add_receiver(h, "am-bad", "alertmanager", "ftp://127.0.0.1/ " + SECRET)
    r = h.cli("test-notify", "am-bad")
    assert r.returncode == 1 and "http://" in r.stdout + r.stderr and SECRET not in r.stdout + r.stderr
