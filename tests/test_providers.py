"""End-to-end tests of Telltale's balance providers (NOWPayments, Kinguin, generic JSON)
and HTTP probes, against the local fake in tests/fakes/provider_fake.py.

No PostgreSQL or Redis needed. Every failure case checks: the error reason counted in
telltale_provider_errors_total, the last good balances kept and marked stale, no crash,
/metrics valid (promtool) and fast, recovery once the API answers again, and the API key
absent from /metrics, the status page and the debug logs.

/metrics is checked to answer without waiting for a provider (helpers.HUNG), not for
speed: scripts/bench/providers.sh measures the scrape latency.
"""

from __future__ import annotations

import secrets
import signal
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from provider_fake import FakeProcess  # noqa: E402

from conftest import find_free_port  # noqa: E402
from helpers import (  # noqa: E402
    assert_not_hung, assert_secrets_absent, poll, promtool_check, samples, series, timed_scrape, timed_scrapes,
    value, wait_until,
)

NO_DEFAULT_COLLECTORS = "collectors: {host: {enabled: false}, process: {enabled: false}}"


# --------------------------------------------------------------------- helpers


def error_counts(table, provider: str) -> dict[str, float]:
    """{reason: count} of telltale_provider_errors_total for one provider."""
    return {dict(l)["reason"]: v for l, v in series(table, "telltale_provider_errors_total", provider=provider).items()}


def metrics(tt) -> dict:
    return samples(timed_scrape(tt)[0])


def metrics_if(tt, condition):
    """The parsed /metrics when condition(it) holds, else None (for wait_for)."""
    m = metrics(tt)
    return m if condition(m) else None


def hung_scrapes(times: list[float]) -> str | None:
    """None unless a scrape took helpers.HUNG seconds (the providers' timeout: it waited
    for a provider); else what to report."""
    try:
        assert_not_hung(times)
    except AssertionError as e:
        return str(e)
    return None


def assert_scrapes_answer(tt, n: int = 20) -> str:
    """n scrapes, none hung (see hung_scrapes); returns the last body."""
    times, text = timed_scrapes(tt, n)
    assert_not_hung(times)
    return text


def provider_runs(tt, providers=("np", "kg")) -> dict[str, float]:
    """{provider: runs of its collector so far}."""
    m = metrics(tt)
    return {p: value(m, "telltale_collector_duration_seconds_count", collector=f"provider:{p}") or 0 for p in providers}


def wait_for(predicate, timeout: float, what: str, tt=None, interval: float = 0.05):
    """wait_until() every 50 ms; on timeout also shows tt's provider series and output."""
    return wait_until(predicate, timeout, what, interval, details=(lambda: _report(tt)) if tt is not None else None)


def _report(tt) -> str:
    try:
        report = "\n--- metrics ---\n" + "\n".join(
            l for l in timed_scrape(tt)[0].splitlines() if l.startswith("telltale_provider") and "_bucket" not in l)
    except requests.RequestException as e:
        report = f"\n(/metrics unreachable: {e})"
    return report + "\n" + tt.describe()[-4000:]


def stop_and_logs(tt) -> str:
    code = tt.stop(signal.SIGTERM)
    assert code == 0, f"telltale exited {code}\n{tt.describe()}"
    return tt.logs()


def new_secret(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


@pytest.fixture
def keys(tmp_path):
    """Random API keys: NOWPayments via ${NP_KEY}, Kinguin via api_key_file."""
    np_key, kg_key = new_secret("np-key"), new_secret("kg-key")
    kg_file = tmp_path / "kinguin.key"
    kg_file.write_text(kg_key + "\n")
    return {"np": np_key, "kg": kg_key, "kg_file": kg_file, "env": {"NP_KEY": np_key}}


@pytest.fixture
def fake(keys):
    """The fake APIs, in a process of their own (see FakeProcess: clean latency numbers)."""
    f = FakeProcess(np_key=keys["np"], kg_key=keys["kg"])
    yield f
    f.stop()


def presets_config(fake, keys, interval: str = "1s", timeout: str = "1s", kg_currency: str | None = "EUR") -> str:
    currency = f"currency: {kg_currency}, " if kg_currency else ""
    return f"""\
log: {{level: debug}}
{NO_DEFAULT_COLLECTORS}
http_threads: 8
providers:
  - {{name: np, type: nowpayments, base_url: "{fake.url}", api_key: "${{NP_KEY}}", interval: {interval}, timeout: {timeout}}}
  - {{name: kg, type: kinguin, base_url: "{fake.url}/", api_key_file: {keys['kg_file']}, {currency}interval: {interval}, timeout: {timeout}}}
"""


GOOD = {  # what the fake's "ok" bodies give
    ("telltale_provider_balance", "np", "btc"): 0.5,
    ("telltale_provider_pending_balance", "np", "btc"): 0.25,
    ("telltale_provider_balance", "np", "eth"): 2.0,
    ("telltale_provider_pending_balance", "np", "eth"): 0.0,
    ("telltale_provider_balance", "kg", "EUR"): 12.5,
}


def balances(table) -> dict[tuple[str, str, str], float]:
    out = {}
    for metric in ("telltale_provider_balance", "telltale_provider_pending_balance"):
        for lbls, v in series(table, metric).items():
            d = dict(lbls)
            out[(metric, d.get("provider"), d.get("currency"))] = v
    return out


def provider_requests(fake, provider: str, since: float | None = None):
    """The fake's record of one preset's requests ("/v1/balance" also ends Kinguin's path)."""
    kinguin = "/esa/api/v1/balance"
    if provider == "kg":
        return fake.requests(kinguin, since)
    return [r for r in fake.requests("/v1/balance", since) if not r.path.endswith(kinguin)]


def both_up(tt):
    m = metrics(tt)
    return m if all(value(m, "telltale_provider_up", provider=p) == 1 for p in ("np", "kg")) else None


# ------------------------------------------------------------- preset providers


def test_presets_report_balances_and_send_the_api_key(start_telltale, fake, keys):
    tt = start_telltale(presets_config(fake, keys), env=keys["env"])
    m = wait_for(lambda: both_up(tt), 8, "both providers up", tt)
    assert balances(m) == GOOD
    now = time.time()
    for p in ("np", "kg"):
        assert value(m, "telltale_provider_stale", provider=p) == 0
        last = value(m, "telltale_provider_last_success_timestamp_seconds", provider=p)
        assert last is not None and now - 5 < last <= now + 1, (p, last, now)
        assert value(m, "telltale_provider_request_duration_seconds_count", provider=p) >= 1
        assert error_counts(m, p) == {}, error_counts(m, p)
        assert value(m, "telltale_collector_up", collector=f"provider:{p}") == 1
    # The key reached the fake in the documented header, on the documented path.
    np_reqs, kg_reqs = provider_requests(fake, "np"), provider_requests(fake, "kg")
    assert np_reqs and kg_reqs
    assert {r.path for r in np_reqs} == {"/v1/balance"} and {r.path for r in kg_reqs} == {"/esa/api/v1/balance"}
    assert all(r.method == "GET" and r.headers.get("x-api-key") == keys["np"] for r in np_reqs)
    assert all(r.method == "GET" and r.headers.get("x-api-key") == keys["kg"] for r in kg_reqs)
    text = assert_scrapes_answer(tt)
    promtool_check(text)
    # Balances move when the API's do.
    fake.set_balances(np={"btc": {"amount": 0.75, "pendingAmount": 0}}, kg=99.99)
    wait_for(lambda: value(metrics(tt), "telltale_provider_balance", provider="kg", currency="EUR") == 99.99,
             10, "the new Kinguin balance", tt)
    m = wait_for(lambda: metrics_if(tt, lambda m: value(m, "telltale_provider_balance", provider="np", currency="btc")
                                    == 0.75), 10, "the new NOWPayments balance", tt)
    # A currency the API no longer lists disappears.
    assert value(m, "telltale_provider_balance", provider="np", currency="eth") is None
    status_page = tt.get("/").text
    logs = stop_and_logs(tt)
    assert_secrets_absent([keys["np"], keys["kg"]], metrics=text, status_page=status_page, logs=logs)


def test_numbers_given_as_strings_parse(start_telltale, fake, keys):
    fake.set_mode("string_numbers")  # {"btc": {"amount": "0.50", "pendingAmount": "0.25"}}, {"balance": "12.50"}
    # (Kinguin without `currency:` here: the preset's EUR applies.)
    tt = start_telltale(presets_config(fake, keys, kg_currency=None), env=keys["env"])
    m = wait_for(lambda: both_up(tt), 8, "both providers up", tt)
    assert balances(m) == GOOD
    assert error_counts(m, "np") == {} and error_counts(m, "kg") == {}
    promtool_check(timed_scrape(tt)[0])


FAILURES = [
    # (fake mode, expected reason, text the log line must show)
    ("unauthorized", "http_4xx", "401"),
    ("unauthorized_echo", "http_4xx", "401"),  # the error body quotes the key: must be redacted
    ("rate_limited", "rate_limited", "429"),
    ("server_error", "http_5xx", "500"),
    ("hang", "timeout", "timeout"),  # the fake sleeps 5 s; the providers' timeout is 1 s
    ("truncated", "bad_json", "bad_json"),
    ("html", "bad_json", "bad_json"),
    ("huge", "too_large", "too_large"),
    ("missing_field", "missing_field", "missing_field"),
    ("bad_value", "bad_value", "bad_value"),
]


@pytest.mark.parametrize("mode,reason,logged", FAILURES, ids=[f[0] for f in FAILURES])
def test_failure_keeps_last_good_value_marked_stale(start_telltale, fake, keys, mode, reason, logged):
    tt = start_telltale(presets_config(fake, keys), env=keys["env"])
    wait_for(lambda: both_up(tt), 8, "both providers up", tt)
    switched_at = time.time()
    fake.set_mode(mode)
    # Any failed run shows in telltale_collector_up (published with the run's families).
    wait_for(lambda: all(value(metrics(tt), "telltale_collector_up", collector=f"provider:{p}") == 0
                         for p in ("np", "kg")), 10, "a failed run of both providers", tt)
    problems: dict[str, None] = {}  # every check runs; all failures are reported together

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems[message] = None

    # Until both providers have finished two more (failed) runs, every scrape keeps the
    # last good balances, marked stale, and answers without waiting for a provider.
    scrape_times = []
    runs_before = provider_runs(tt)
    give_up = time.monotonic() + 15
    while True:
        text, elapsed = timed_scrape(tt)
        scrape_times.append(elapsed)
        m = samples(text)
        check(balances(m) == GOOD, f"last good balances not exported during {mode!r}: got {balances(m)}")
        for p in ("np", "kg"):
            check(value(m, "telltale_provider_up", provider=p) == 0,
                  f"{p}: telltale_provider_up = {value(m, 'telltale_provider_up', provider=p)}, want 0")
            check(value(m, "telltale_provider_stale", provider=p) == 1,
                  f"{p}: telltale_provider_stale = {value(m, 'telltale_provider_stale', provider=p)}, want 1")
            last = value(m, "telltale_provider_last_success_timestamp_seconds", provider=p)
            check(last is not None and last <= switched_at + 0.5,
                  f"{p}: last_success_timestamp = {last}, want the time of the last good fetch (<= {switched_at:.1f})")
        runs = {p: value(m, "telltale_collector_duration_seconds_count", collector=f"provider:{p}") or 0
                for p in ("np", "kg")}
        if all(runs[p] >= runs_before[p] + 2 for p in runs):
            break
        if time.monotonic() > give_up:
            check(False, f"fewer than two more runs of each provider in 15 s: {runs_before} -> {runs}")
            break
        time.sleep(0.05)  # pacing the sampling
    hung = hung_scrapes(scrape_times)
    check(hung is None, str(hung))

    def counted():
        m = metrics(tt)
        return m if all(error_counts(m, p).get(reason, 0) >= 1 for p in ("np", "kg")) else None

    m = poll(counted, 10, interval=0.05) or metrics(tt)
    for p in ("np", "kg"):
        check(set(error_counts(m, p)) == {reason},
              f"{p}: telltale_provider_errors_total by reason = {error_counts(m, p)}, want only {reason!r}")
    check(tt.running, "telltale died")
    promtool_check(text)
    status_page = tt.get("/").text
    last_failing = timed_scrape(tt)[0]

    # Recovery: fresh values, no longer stale (a 429 first waits out its Retry-After: 2).
    fake.set_balances(np={"btc": {"amount": 1.5, "pendingAmount": "0"}}, kg=7)
    fake.set_mode("ok")

    def recovered():
        m = metrics(tt)
        fresh = (value(m, "telltale_provider_balance", provider="np", currency="btc") == 1.5
                 and value(m, "telltale_provider_balance", provider="kg", currency="EUR") == 7)
        ok = all(value(m, "telltale_provider_stale", provider=p) == 0 for p in ("np", "kg"))
        return m if fresh and ok and both_up(tt) else None

    check(poll(recovered, 15, interval=0.05) is not None, "no recovery within 15 s after the API answered again")
    logs = stop_and_logs(tt)
    for p in ("np", "kg"):
        lines = [l for l in logs.splitlines() if f"provider:{p}" in l]
        check(any(reason in l and logged in l for l in lines),
              f"no log line for provider:{p} naming {reason}/{logged}: " + " | ".join(lines[-3:]))
    if mode == "unauthorized_echo":  # the quoted key was there, and was masked
        check("Invalid api key ***" in logs and "key *** is revoked" in logs, "the echoed key was not masked as ***")
    for secret in (keys["np"], keys["kg"]):
        for where, body in (("/metrics", text), ("status page", status_page), ("logs", logs)):
            check(secret not in body, f"an API key appears in {where}")
    assert not problems, "\n".join(problems) + "\n--- /metrics (provider series) while failing ---\n" + "\n".join(
        l for l in last_failing.splitlines() if "provider" in l and "_bucket" not in l and not l.startswith("#"))


def test_retry_after_is_honoured(start_telltale, fake, keys):
    """After a 429 with Retry-After: 2 no request for 2 s, though the interval is 500 ms."""
    tt = start_telltale(presets_config(fake, keys, interval="500ms", timeout="500ms"), env=keys["env"])
    wait_for(lambda: both_up(tt), 8, "both providers up", tt)
    fake.set_mode("rate_limited")
    # Rate limited until each provider has been answered 429 three times: two gaps after a
    # 429 to measure. With its default back-off (60 s) instead of Retry-After this times out.
    wait_for(lambda: all(sum(r.status == 429 for r in provider_requests(fake, p)) >= 3 for p in ("np", "kg")),
             20, "three 429s to each provider", tt)
    fake.set_mode("ok")
    wait_for(lambda: both_up(tt), 15, "both providers up again", tt)
    m = metrics(tt)
    for p in ("np", "kg"):
        reqs = provider_requests(fake, p)
        limited = [i for i, r in enumerate(reqs) if r.status == 429]
        assert len(limited) >= 2, f"{p}: expected repeated 429s, got {[r.status for r in reqs]}"
        for i in limited:
            if i + 1 < len(reqs):
                gap = reqs[i + 1].at - reqs[i].at
                assert gap >= 1.9, f"{p}: a request {gap:.2f}s after a 429 with Retry-After: 2"
        # ...and it did not wait for its default back-off (60 s) instead; well under that,
        # whatever a busy machine adds to the 2 s.
        gaps = [reqs[i + 1].at - reqs[i].at for i in limited if i + 1 < len(reqs)]
        assert max(gaps) < 20, f"{p}: gaps after 429s {gaps}"
        assert error_counts(m, p).get("rate_limited") == len(limited), (p, error_counts(m, p), len(limited))
    logs = stop_and_logs(tt)
    assert_secrets_absent([keys["np"], keys["kg"]], logs=logs)


def answered_polls(fake, n: int):
    """The presets' requests once each has had n answered, else None (for wait_for)."""
    reqs = {p: provider_requests(fake, p) for p in ("np", "kg")}
    done = all(len([r for r in rs if r.status is not None]) >= n for rs in reqs.values())
    return reqs["np"] + reqs["kg"] if done else None


def test_polls_reuse_their_connection(start_telltale, fake, keys):
    """A provider polled again finds its connection open: no new TCP connection per poll."""
    tt = start_telltale(presets_config(fake, keys), env=keys["env"])
    reqs = wait_for(lambda: answered_polls(fake, 5), 30, "five polls each", tt)
    # Both presets reach the same host, so they may share; a poll that overlaps another or
    # times out on a busy machine takes another, but nowhere near one each.
    assert len({r.connection for r in reqs}) <= len(reqs) // 2, [(r.path, r.connection) for r in reqs]


@pytest.mark.parametrize("farewell", [False, True], ids=["silently", "after-a-408"])
def test_a_connection_closed_while_idle_is_replaced_unnoticed(start_telltale, fake, keys, farewell):
    """Servers close idle keep-alives, some after an unasked 408: the next poll connects
    anew (libcurl 7.88 reads such a 408 as its answer; Telltale asks again) and counts no error."""
    fake.set_idle_timeout(0.2, farewell)  # shorter than the interval: every poll finds its connection closed
    tt = start_telltale(presets_config(fake, keys, interval="500ms", timeout="500ms"), env=keys["env"])
    reqs = wait_for(lambda: answered_polls(fake, 4), 30, "four polls each", tt)
    assert all(r.status == 200 for r in reqs), [r.status for r in reqs]
    assert len({r.connection for r in reqs}) > 2, "the closed connections were not replaced"
    m = metrics(tt)
    for p in ("np", "kg"):
        assert error_counts(m, p) == {}, (p, error_counts(m, p))
        assert value(m, "telltale_provider_up", provider=p) == 1


def test_wrong_key_is_http_4xx_and_never_shown(start_telltale, fake, keys, tmp_path):
    """The fake answers 401 to any other key; the key we sent stays out of every output."""
    wrong = new_secret("wrong-np-key")
    tt = start_telltale(presets_config(fake, keys), env={"NP_KEY": wrong})
    m = wait_for(lambda: metrics_if(tt, lambda m: error_counts(m, "np").get("http_4xx")),
                 6, "http_4xx for np", tt)
    assert value(m, "telltale_provider_up", provider="np") == 0
    assert value(m, "telltale_provider_stale", provider="np") == 0  # nothing good yet: nothing stale
    assert series(m, "telltale_provider_balance", provider="np") == {}
    assert value(m, "telltale_provider_last_success_timestamp_seconds", provider="np") is None
    assert provider_requests(fake, "np")[0].headers["x-api-key"] == wrong
    text = assert_scrapes_answer(tt)
    promtool_check(text)
    status_page = tt.get("/").text
    logs = stop_and_logs(tt)
    assert "http_4xx: HTTP 401: Invalid api key" in logs, logs[-2000:]
    assert_secrets_absent([wrong, keys["kg"]], metrics=text, status_page=status_page, logs=logs)


# ------------------------------------------------------------ generic JSON provider


def test_json_provider_path_language(start_telltale, fake, tmp_path):
    token, extra = new_secret("bearer"), new_secret("extra")
    extra_file = tmp_path / "extra.secret"
    extra_file.write_text(extra + "\n")
    fake.set_route("/wallets", {"data": {"wallets": [
        {"code": "USD", "available": "100.25", "pending": 5},
        {"code": "EUR", "available": 7, "pending": "0.50"},
    ]}})
    fake.set_route("/by-currency", {"btc": {"amount": 0.1}, "usdt": {"amount": "250.00"}})
    fake.set_route("/networks", {"mainnet": {"btc": 1, "eth": "2.5"}, "testnet": {"btc": 3}})
    fake.set_route("/summary", {"accounts": [{"total": 42}, {"total": 43}]})
    fake.set_route("/star", {"wallets": {"w1": {"amount": 1, "cur": "XAU"}, "w2": {"amount": 2, "cur": "XAG"}}})
    fake.set_route("/quoted", {"a.b": {"v": 5}})
    u = fake.url
    config = f"""\
log: {{level: debug}}
{NO_DEFAULT_COLLECTORS}
providers:
  - name: acme
    url: {u}/wallets
    method: GET
    headers: {{Authorization: "Bearer ${{TOKEN}}", X-Extra_file: {extra_file}}}
    balances:
      - {{path: "data.wallets[*]", value: available, pending: pending, currency_field: code}}
    labels: {{region: eu}}
    max_body_bytes: 1048576
    interval: 1s
    timeout: 1s
  - {{name: keys, url: {u}/by-currency, balances: [{{path: "{{currency}}.amount"}}], interval: 1s, timeout: 1s}}
  - {{name: nets, url: {u}/networks, balances: [{{path: "{{network}}.{{currency}}"}}], interval: 1s, timeout: 1s}}
  - {{name: summary, url: {u}/summary, balances: [{{path: "accounts[1]", value: total}}], currency: USD,
      labels: {{team: ops, tier: "1"}}, interval: 1s, timeout: 1s}}
  - {{name: star, url: {u}/star, balances: [{{path: "wallets.*", value: amount, currency_field: cur}}], interval: 1s, timeout: 1s}}
  - {{name: quoted, type: json, url: {u}/quoted, balances: [{{path: "$['a.b']", value: v}}], currency: GBP, interval: 1s, timeout: 1s}}
"""
    tt = start_telltale(config, env={"TOKEN": token})
    names = ["acme", "keys", "nets", "summary", "star", "quoted"]

    def all_up():
        m = metrics(tt)
        return m if all(value(m, "telltale_provider_up", provider=n) == 1 for n in names) else None

    m = wait_for(all_up, 8, "every json provider up", tt)

    assert series(m, "telltale_provider_balance", provider="acme") == {
        frozenset({"provider": "acme", "currency": "USD", "region": "eu"}.items()): 100.25,
        frozenset({"provider": "acme", "currency": "EUR", "region": "eu"}.items()): 7.0,
    }
    assert series(m, "telltale_provider_pending_balance", provider="acme") == {
        frozenset({"provider": "acme", "currency": "USD", "region": "eu"}.items()): 5.0,
        frozenset({"provider": "acme", "currency": "EUR", "region": "eu"}.items()): 0.5,
    }
    assert series(m, "telltale_provider_balance", provider="keys") == {
        frozenset({"provider": "keys", "currency": "btc"}.items()): 0.1,
        frozenset({"provider": "keys", "currency": "usdt"}.items()): 250.0,
    }
    assert series(m, "telltale_provider_balance", provider="nets") == {
        frozenset({"provider": "nets", "network": "mainnet", "currency": "btc"}.items()): 1.0,
        frozenset({"provider": "nets", "network": "mainnet", "currency": "eth"}.items()): 2.5,
        frozenset({"provider": "nets", "network": "testnet", "currency": "btc"}.items()): 3.0,
    }
    assert series(m, "telltale_provider_balance", provider="summary") == {
        frozenset({"provider": "summary", "currency": "USD", "team": "ops", "tier": "1"}.items()): 43.0,
    }
    assert series(m, "telltale_provider_balance", provider="star") == {
        frozenset({"provider": "star", "currency": "XAU"}.items()): 1.0,
        frozenset({"provider": "star", "currency": "XAG"}.items()): 2.0,
    }
    assert series(m, "telltale_provider_balance", provider="quoted") == {
        frozenset({"provider": "quoted", "currency": "GBP"}.items()): 5.0,
    }
    # No pending series where no pending path was configured.
    assert series(m, "telltale_provider_pending_balance", provider="keys") == {}
    # up/stale/last_success carry only the provider label, not the static ones.
    assert value(m, "telltale_provider_up", provider="summary") == 1
    assert value(m, "telltale_provider_stale", provider="summary") == 0

    # Headers: inline with ${VAR}, and from a file (trailing newline dropped).
    reqs = fake.requests("/wallets")
    assert reqs and all(r.method == "GET" for r in reqs)
    assert reqs[-1].headers.get("authorization") == f"Bearer {token}"
    assert reqs[-1].headers.get("x-extra") == extra
    text = assert_scrapes_answer(tt)
    promtool_check(text)
    status_page = tt.get("/").text
    logs = stop_and_logs(tt)
    assert_secrets_absent([token, extra], metrics=text, status_page=status_page, logs=logs)


def test_json_provider_post_body_reaches_the_api(start_telltale, fake):
    body = '{"query": "balances", "account": 42}'
    fake.set_route("/rpc", {"result": {"balance": "3.25", "asset": "USDC"}})
    config = f"""\
log: {{level: debug}}
{NO_DEFAULT_COLLECTORS}
providers:
  - name: rpc
    url: {fake.url}/rpc
    method: post
    body: '{body}'
    headers: {{Content-Type: application/json}}
    balances: [{{path: result, value: balance, currency_field: asset}}]
    interval: 1s
    timeout: 1s
"""
    tt = start_telltale(config)
    m = wait_for(lambda: metrics_if(tt, lambda m: value(m, "telltale_provider_up", provider="rpc") == 1),
                 8, "rpc up", tt)
    assert value(m, "telltale_provider_balance", provider="rpc", currency="USDC") == 3.25
    reqs = fake.requests("/rpc")
    assert reqs[0].method == "POST"
    assert reqs[0].body == body.encode()
    assert reqs[0].headers.get("content-type") == "application/json"
    assert int(reqs[0].headers.get("content-length", -1)) == len(body)
    # A POST never goes over a kept connection (libcurl would send it again by itself if
    # the connection failed under it).
    reqs = wait_for(lambda: r if len(r := fake.requests("/rpc")) >= 3 else None, 10, "three polls", tt)
    assert len({r.connection for r in reqs}) == len(reqs), [r.connection for r in reqs]
    stop_and_logs(tt)


def test_json_provider_errors(start_telltale, fake):
    """A path that selects nothing, a missing currency field, a non-number amount, a body
    over max_body_bytes, a 404: each its reason; the others keep working."""
    fake.set_route("/good", {"balance": 1})
    fake.set_route("/big", {"balance": 1, "padding": "x" * 4096})
    fake.set_route("/nocurrency", {"items": [{"amount": 1}]})
    fake.set_route("/object-amount", {"balance": {"nested": 1}})
    u = fake.url
    config = f"""\
log: {{level: debug}}
{NO_DEFAULT_COLLECTORS}
providers:
  - {{name: good, url: {u}/good, balances: [{{path: balance}}], currency: USD, interval: 1s, timeout: 1s}}
  - {{name: nopath, url: {u}/good, balances: [{{path: data.wallets}}], interval: 1s, timeout: 1s}}
  - {{name: nocur, url: {u}/nocurrency, balances: [{{path: "items[*]", value: amount, currency_field: code}}], interval: 1s, timeout: 1s}}
  - {{name: objamt, url: {u}/object-amount, balances: [{{path: balance}}], interval: 1s, timeout: 1s}}
  - {{name: big, url: {u}/big, balances: [{{path: balance}}], max_body_bytes: 1024, interval: 1s, timeout: 1s}}
  - {{name: gone, url: {u}/does-not-exist, balances: [{{path: balance}}], interval: 1s, timeout: 1s}}
  - {{name: refused, url: "http://127.0.0.1:{find_free_port()}/x", balances: [{{path: balance}}], interval: 1s, timeout: 1s}}
"""
    tt = start_telltale(config)
    expected = {"nopath": "missing_field", "nocur": "missing_field", "objamt": "bad_value",
                "big": "too_large", "gone": "http_4xx", "refused": "connect"}

    def all_counted():
        m = metrics(tt)
        done = all(error_counts(m, n).get(r, 0) >= 1 for n, r in expected.items())
        return m if done and value(m, "telltale_provider_up", provider="good") == 1 else None

    m = wait_for(all_counted, 8, "every expected reason", tt)
    for name, reason in expected.items():
        assert set(error_counts(m, name)) == {reason}, (name, error_counts(m, name))
        assert value(m, "telltale_provider_up", provider=name) == 0
        assert value(m, "telltale_provider_stale", provider=name) == 0
        assert series(m, "telltale_provider_balance", provider=name) == {}
    assert value(m, "telltale_provider_balance", provider="good", currency="USD") == 1
    promtool_check(assert_scrapes_answer(tt))
    stop_and_logs(tt)


# --------------------------------------------------------------------- probes


def test_probes(start_telltale, fake):
    fake.set_route("/health", "ok")
    fake.set_route("/degraded", "degraded")
    fake.set_route("/fail", "down", status=503)
    fake.set_route("/flappy", "ok")
    u = fake.url
    config = f"""\
log: {{level: debug}}
{NO_DEFAULT_COLLECTORS}
probes:
  - {{name: api, url: "{u}/health", expect_status: [200], expect_body: ok, interval: 1s, timeout: 1s, error_window: 1m}}
  - {{name: mismatch, url: "{u}/degraded", expect_body: ok, interval: 1s, timeout: 1s}}
  - {{name: failing, url: "{u}/fail", interval: 1s, timeout: 1s}}
  - {{name: accepted503, url: "{u}/fail", expect_status: [503], interval: 1s, timeout: 1s}}
  - {{name: refused, url: "http://127.0.0.1:{find_free_port()}/health", interval: 1s, timeout: 1s}}
  - {{name: flappy, url: "{u}/flappy", interval: 500ms, timeout: 500ms, error_window: 3s}}
"""
    tt = start_telltale(config)
    names = ["api", "mismatch", "failing", "accepted503", "refused", "flappy"]

    def probed_twice():
        m = metrics(tt)
        return m if all((value(m, "telltale_probe_duration_seconds_count", target=n) or 0) >= 2 for n in names) else None

    m = wait_for(probed_twice, 8, "two runs of every probe", tt)
    expect = {  # target: (success, status code, error ratio)
        "api": (1, 200, 0), "mismatch": (0, 200, 1), "failing": (0, 503, 1), "accepted503": (1, 503, 0),
        "refused": (0, 0, 1), "flappy": (1, 200, 0),
    }
    for n, (success, code, ratio) in expect.items():
        got = (value(m, "telltale_probe_success", target=n), value(m, "telltale_probe_status_code", target=n),
               value(m, "telltale_probe_error_ratio", target=n))
        assert got == (success, code, ratio), f"{n}: (success, status, ratio) = {got}"
    # Latency histogram: cumulative buckets, +Inf == count.
    for n in names:
        buckets = sorted(((float(dict(l)["le"]), v) for l, v in
                          series(m, "telltale_probe_duration_seconds_bucket", target=n).items()))
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1][0] == float("inf"), (n, buckets)
        assert buckets[-1][1] == value(m, "telltale_probe_duration_seconds_count", target=n)
    fast = [v for l, v in series(m, "telltale_probe_duration_seconds_bucket", target="api").items()
            if float(dict(l)["le"]) == 1.0]
    assert fast == [value(m, "telltale_probe_duration_seconds_count", target="api")], "a local probe took > 1 s"

    # Error ratio over the window: failures / probes, then back to 0 once the window passes.
    fake.set_mode("server_error", path="/flappy")
    # The first failure counted: successes from before are still in the 3 s window.
    m = wait_for(lambda: metrics_if(tt, lambda m: (value(m, "telltale_probe_error_ratio", target="flappy") or 0) > 0),
                 10, "the first failure of flappy in its error ratio", tt)
    ratio = value(m, "telltale_probe_error_ratio", target="flappy")
    assert 0 < ratio < 1, f"flappy ratio {ratio}"
    assert value(m, "telltale_probe_success", target="flappy") == 0
    assert value(m, "telltale_probe_status_code", target="flappy") == 500
    # ratio == failures / probes in the window; the fake saw every failure (one may still be
    # on its way into the metrics), and the window holds at most every probe made so far.
    failures = sum(r.status == 500 for r in fake.requests("/flappy"))
    total = value(m, "telltale_probe_duration_seconds_count", target="flappy")
    assert any(abs(k / t - ratio) < 1e-9 for k in (failures, failures - 1) if k > 0
               for t in range(k, int(total) + 1)), (ratio, failures, total)
    fake.set_mode(None, path="/flappy")
    wait_for(lambda: value(metrics(tt), "telltale_probe_error_ratio", target="flappy") == 0, 15,
             "the flappy error ratio back to 0 once its 3 s window passed", tt)
    text = assert_scrapes_answer(tt)
    promtool_check(text)
    stop_and_logs(tt)


def test_probes_connect_afresh(start_telltale, fake):
    """A probe sees the endpoint as a new client would: one refusing new connections must
    not look healthy over a kept one."""
    fake.set_route("/health", "ok")
    config = f"""\
{NO_DEFAULT_COLLECTORS}
probes:
  - {{name: api, url: "{fake.url}/health", interval: 500ms, timeout: 500ms}}
"""
    tt = start_telltale(config)
    reqs = wait_for(lambda: r if len(r := fake.requests("/health")) >= 4 else None, 15, "four probes", tt)
    assert len({r.connection for r in reqs}) == len(reqs), [r.connection for r in reqs]
    stop_and_logs(tt)


def test_probe_of_a_hanging_target(start_telltale, fake):
    """A target that does not answer within the timeout is a failed probe (success 0,
    status 0, a duration of about the timeout, error ratio 1), not a missing series."""
    fake.set_route("/slow", "ok")
    fake.set_mode("hang", path="/slow")
    config = f"""\
log: {{level: debug}}
{NO_DEFAULT_COLLECTORS}
probes:
  - {{name: slow, url: "{fake.url}/slow", interval: 1s, timeout: 1s}}
"""
    tt = start_telltale(config)
    m = wait_for(lambda: metrics_if(tt, lambda m: (value(m, "telltale_probe_duration_seconds_count", target="slow")
                                                   or 0) >= 1), 6, "the first (failed) probe of the slow target", tt)
    got = {n: value(m, n, target="slow") for n in ("telltale_probe_success", "telltale_probe_status_code",
                                                   "telltale_probe_error_ratio", "telltale_probe_duration_seconds_count")}
    assert got["telltale_probe_success"] == 0 and got["telltale_probe_status_code"] == 0 \
        and got["telltale_probe_error_ratio"] == 1 and (got["telltale_probe_duration_seconds_count"] or 0) >= 1, (
        f"probe series of a hanging target: {got}\n"
        + "\n".join(l for l in timed_scrape(tt)[0].splitlines() if "slow" in l and "_bucket" not in l))
    count = got["telltale_probe_duration_seconds_count"]
    # The request gives up a little inside the collector's timeout (at 80 % of 1 s), so the
    # probe reports the failure itself before the run would be cut off.
    assert value(m, "telltale_probe_duration_seconds_sum", target="slow") >= 0.75 * count
    promtool_check(assert_scrapes_answer(tt))
    stop_and_logs(tt)


# --------------------------------------------------------------------- scale


def test_fifty_providers_one_hanging(start_telltale, fake, keys):
    """50 Kinguin providers at 1 s, one hanging (5 s > its 1 s timeout), 8 HTTP threads: the
    others keep updating as often as the hanging one is retried (every ~1 s), and /metrics
    keeps answering."""
    n = 50
    hanging = "k49"
    fake.set_mode("hang", path=f"/{hanging}/esa/api/v1/balance")
    lines = [f"  - {{name: k{i}, type: kinguin, base_url: \"{fake.url}/k{i}\", api_key_file: {keys['kg_file']}, "
             f"interval: 1s, timeout: 1s}}" for i in range(n)]
    config = f"log: {{level: debug}}\n{NO_DEFAULT_COLLECTORS}\nhttp_threads: 8\nproviders:\n" + "\n".join(lines) + "\n"
    tt = start_telltale(config)
    healthy = [f"k{i}" for i in range(n) if f"k{i}" != hanging]

    def all_healthy_up():
        m = metrics(tt)
        return m if all(value(m, "telltale_provider_up", provider=p) == 1 for p in healthy) else None

    m = wait_for(all_healthy_up, 8, "49 providers up", tt)
    seen: dict[str, set[float]] = {p: set() for p in healthy}
    worst_age = {p: 0.0 for p in healthy}
    missing: set[str] = set()
    scrape_times = []

    def hanging_runs(m) -> float:
        return value(m, "telltale_collector_duration_seconds_count", collector=f"provider:{hanging}") or 0

    # The clock of this test is the hanging provider itself: sample until it has been tried
    # (and timed out) five more times, so a slow machine slows the yardstick too.
    runs_before = hanging_runs(m)
    give_up = time.monotonic() + 30
    while hanging_runs(m) < runs_before + 5:
        assert time.monotonic() < give_up, f"the hanging provider was tried {hanging_runs(m) - runs_before} times in 30 s"
        text, elapsed = timed_scrape(tt)
        now = time.time()
        scrape_times.append(elapsed)
        m = samples(text)
        for p in healthy:
            last = value(m, "telltale_provider_last_success_timestamp_seconds", provider=p)
            if last is None:
                missing.add(p)
                continue
            seen[p].add(last)
            worst_age[p] = max(worst_age[p], now - last)
        time.sleep(0.1)  # pacing the sampling
    assert not missing, f"healthy providers whose series vanished in some scrape: {sorted(missing)}"
    # As often as the hanging one: 4+ fresh values while it was tried 5 times. A provider held
    # up by the hanging one would miss ticks across the board; one or two late ticks are
    # machine noise.
    lagging = {p for p, v in seen.items() if len(v) < 4}
    if len(lagging) > 2 or any(len(seen[p]) < 3 for p in lagging):
        sent = {p: [round(r.wall % 100, 2) for r in fake.requests(f"/{p}/esa/api/v1/balance")][-8:]
                for p in sorted(lagging)[:5]}
        worst = {p: round(worst_age[p], 2) for p in sorted(lagging)}
        pytest.fail(f"providers not updating as often as the hanging one is tried: fresh values seen while it was "
                    f"tried 5 times { {p: len(seen[p]) for p in sorted(lagging)} }, their worst ages {worst}; the "
                    f"fake's request times (wall % 100 s) for some of them: {sent}", pytrace=False)
    assert_not_hung(scrape_times)
    # The hanging one is retried every interval and never reports a balance. (Its up/stale
    # series are checked by test_failure_keeps_last_good_value_marked_stale[hang].)
    m = samples(text)
    assert series(m, "telltale_provider_balance", provider=hanging) == {}
    assert len(fake.requests(f"/{hanging}/esa/api/v1/balance")) >= 4
    promtool_check(text)
    logs = stop_and_logs(tt)
    assert_secrets_absent([keys["kg"]], metrics=text, logs=logs)
