"""End-to-end tests of configuration reload: SIGHUP and POST /-/reload.

A reload reads and validates the whole file first; unchanged collectors keep running with
their state (an incremental counter keeps its total), changed ones are replaced, new ones
start, removed ones' series go; a broken file changes nothing and sets
telltale_config_last_reload_successful to 0. Needs the PostgreSQL of scripts/services.sh.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from provider_fake import FakeProcess  # noqa: E402

from helpers import promtool_check, scrape, wait_for, wait_until  # noqa: E402
from test_postgres import PG, config_yaml, make_table, pg, target  # noqa: E402,F401  (fixtures)


def reload_config(table: str, rows_sql: str, providers: list[dict] | None = None) -> str:
    queries = [
        {"metric": "tt_reload_seen", "type": "counter", "mode": "incremental", "watermark": "id",
         "sql": f"SELECT id FROM {table} WHERE id > $1 ORDER BY id"},
        {"metric": "tt_reload_rows", "type": "gauge", "sql": rows_sql, "values": ["value"]},
    ]
    text = config_yaml([target(health={"enabled": False}, queries=queries)])
    if providers:
        text += yaml.safe_dump({"providers": providers}, sort_keys=False)
    return text


def reload_metrics(s) -> tuple[float | None, float | None, float | None]:
    return (s.get("telltale_config_last_reload_successful"),
            s.get("telltale_config_reloads_total", result="success"),
            s.get("telltale_config_reloads_total", result="failure"))


def test_sighup_replaces_changed_collectors_and_keeps_unchanged_state(make_table, start_telltale, pg: PG) -> None:
    table = make_table("reload", "id bigserial PRIMARY KEY")
    pg.run(f"INSERT INTO {table} SELECT FROM generate_series(1, 5)")
    config = reload_config(table, f"SELECT count(*) AS value FROM {table}")
    tt = start_telltale(config)
    s, _ = wait_for(tt, lambda s: s.get("tt_reload_seen_total") == 5 and s.get("tt_reload_rows") == 5, 10,
                    "both queries")
    assert reload_metrics(s) == (1, 0, 0)
    started_at = s.get("telltale_config_last_reload_success_timestamp_seconds")

    # Rows deleted: a counter started again would count 2, the running one stays at 5.
    pg.run(f"DELETE FROM {table} WHERE id <= 3")
    with FakeProcess() as fake:
        fake.set_route("/balance", {"balance": 7})
        provider = {"name": "added", "url": f"{fake.url}/balance", "currency": "EUR",
                    "balances": [{"path": "", "value": "balance"}], "interval": "1s", "timeout": "1s"}
        tt.config_path.write_text(reload_config(table, f"SELECT 10 * count(*) AS value FROM {table}", [provider]))
        tt.proc.send_signal(signal.SIGHUP)
        s, _ = wait_for(tt, lambda s: s.get("tt_reload_rows") == 20
                        and s.get("telltale_provider_balance", provider="added", currency="EUR") == 7, 10,
                        "the changed query and the added provider")
        assert s.get("tt_reload_seen_total") == 5, "the unchanged incremental counter kept its total"
        assert reload_metrics(s) == (1, 1, 0)
        assert s.get("telltale_config_last_reload_success_timestamp_seconds") >= started_at
        # The kept collector goes on counting new rows.
        pg.run(f"INSERT INTO {table} SELECT FROM generate_series(1, 2)")
        wait_for(tt, lambda s: s.get("tt_reload_seen_total") == 7, 10, "new rows counted by the kept collector")
        promtool_check(scrape(tt).text)

        # The provider removed again: its series go, the queries stay.
        tt.config_path.write_text(reload_config(table, f"SELECT 10 * count(*) AS value FROM {table}"))
        tt.proc.send_signal(signal.SIGHUP)
        s, _ = wait_for(tt, lambda s: s.get("telltale_config_reloads_total", result="success") == 2, 10, "second reload")
        assert s.find("telltale_provider_balance") == []
        assert s.find("telltale_collector_up", collector="provider:added") == []
        assert s.get("tt_reload_seen_total") == 7
    assert tt.running


def test_broken_file_leaves_everything_running(make_table, start_telltale, pg: PG, tmp_path) -> None:
    table = make_table("reload_bad", "id bigserial PRIMARY KEY")
    pg.run(f"INSERT INTO {table} SELECT FROM generate_series(1, 3)")
    good = reload_config(table, f"SELECT count(*) AS value FROM {table}")
    tt = start_telltale(good)
    wait_for(tt, lambda s: s.get("tt_reload_seen_total") == 3, 10, "first run")

    missing_secret = tmp_path / "no-such-password"
    broken = [
        "postgres: [oops",  # not YAML
        good.replace("interval: 1s", "interval: soon", 1),  # a bad value
        good + f"server: {{auth: {{basic: {{username: u, password_file: {missing_secret}}}}}}}\n",  # unreadable secret
    ]
    for attempt, text in enumerate(broken, start=1):
        tt.config_path.write_text(text)
        tt.proc.send_signal(signal.SIGHUP)
        s, _ = wait_for(tt, lambda s: s.get("telltale_config_reloads_total", result="failure") == attempt, 10,
                        f"failed reload {attempt}")
        assert s.get("telltale_config_last_reload_successful") == 0
    # Still collecting with the running configuration.
    pg.run(f"INSERT INTO {table} SELECT FROM generate_series(1, 2)")
    wait_for(tt, lambda s: s.get("tt_reload_seen_total") == 5, 10, "collection goes on")
    assert "configuration reload failed" in tt.stderr()
    assert "interval" in tt.stderr() and str(missing_secret) in tt.stderr()

    tt.config_path.write_text(good)
    tt.proc.send_signal(signal.SIGHUP)
    s, _ = wait_for(tt, lambda s: s.get("telltale_config_last_reload_successful") == 1, 10, "a good reload")
    assert s.get("tt_reload_seen_total") == 5


def test_reload_endpoint_needs_the_lifecycle_flag(make_table, start_telltale, pg: PG) -> None:
    table = make_table("reload_http", "id bigserial PRIMARY KEY")
    config = reload_config(table, f"SELECT count(*) AS value FROM {table}")
    plain = start_telltale(config)
    assert requests.post(plain.url + "/-/reload", timeout=10).status_code == 403
    assert requests.get(plain.url + "/-/reload", timeout=10).status_code == 405

    tt = start_telltale(config, args=["--web.enable-lifecycle"])
    r = requests.post(tt.url + "/-/reload", timeout=30)
    assert r.status_code == 200, r.text
    tt.config_path.write_text(config.replace("interval: 1s", "interval: soon", 1))
    r = requests.put(tt.url + "/-/reload", timeout=30)
    assert r.status_code == 500 and "failed to reload config" in r.text and "interval" in r.text, r.text
    s = scrape(tt)
    assert reload_metrics(s) == (0, 1, 1)


def test_a_rotated_token_applies_at_reload(start_telltale, tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("old-leaked-token\n")
    tt = start_telltale(f"collectors: {{host: {{enabled: false}}}}\nserver: {{auth: {{bearer_token_file: {token}}}}}\n")
    assert tt.get("/metrics", headers={"Authorization": "Bearer old-leaked-token"}).status_code == 200
    token.write_text("new-token\n")
    tt.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: tt.get("/metrics", headers={"Authorization": "Bearer new-token"}).status_code == 200, 10,
               "the new token accepted")
    assert tt.get("/metrics", headers={"Authorization": "Bearer old-leaked-token"}).status_code == 401
    assert tt.get("/", headers={"Authorization": "Bearer old-leaked-token"}).status_code == 401


def test_reload_endpoint_asks_for_the_configured_credentials(start_telltale) -> None:
    config = "collectors: {host: {enabled: false}}\nserver: {auth: {bearer_token: sesame}}\n"
    tt = start_telltale(config, args=["--web.enable-lifecycle"])
    assert requests.post(tt.url + "/-/reload", timeout=10).status_code == 401
    r = requests.post(tt.url + "/-/reload", headers={"Authorization": "Bearer sesame"}, timeout=30)
    assert r.status_code == 200, r.text
    wait_until(lambda: tt.running, 1, "still running")
