"""End-to-end tests of grouped notifications, reminders, silences and mute times
(issue #13, parts 2 and 3), with real PostgreSQL and the fake chat receiver.

Each test uses tests/test_alerting.py's Harness: a fresh database, ``tt_level{svc}`` read
from ``tt_level_src`` every 500 ms, and a webhook channel whose payload (Alertmanager's
webhook format) lists every alert of a message.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_alerting import FIRING_AFTER, Harness, h, rx, sql_literal, wait_until  # noqa: E402,F401

from helpers import scrape  # noqa: E402


def add_services(h: Harness, names: list[str], v: float = 1) -> None:
    h.sql("INSERT INTO tt_level_src VALUES " + ", ".join(f"({sql_literal(n)}, {float(v)})" for n in names))


def set_levels(h: Harness, names: list[str], v: float) -> None:
    h.sql(f"UPDATE tt_level_src SET v = {float(v)} WHERE svc IN ({', '.join(sql_literal(n) for n in names)})")


def group_channel(h: Harness, name: str, **columns: float | str) -> str:
    path = h.add_channel(name, "webhook")
    assignments = ", ".join(f"{column} = {sql_literal(value)}" for column, value in columns.items())
    if assignments:
        h.sql(f"UPDATE telltale_channels SET {assignments} WHERE name = {sql_literal(name)}")
    return path


def alerts_of(message) -> list[tuple[str, str]]:
    """(status, svc) of every alert a webhook message lists, sorted."""
    return sorted((a["status"], a["labels"].get("svc", "")) for a in message.json["alerts"])


SERVICES = [f"s{i}" for i in range(10)]


def test_ten_series_one_message_then_an_update_a_reminder_and_the_resolved(h: Harness) -> None:
    path = group_channel(h, "grouped", group_wait_seconds=2, group_interval_seconds=4, repeat_interval_seconds=8)
    h.add_rule("level_high", 10, channel="grouped")
    add_services(h, SERVICES)
    tt = h.start()
    h.runs(tt, 2)
    set_levels(h, SERVICES, 20)
    first = h.wait_accepted(path, 1, timeout=FIRING_AFTER + 2)[0]
    assert alerts_of(first) == [("firing", s) for s in SERVICES], alerts_of(first)
    assert first.json["groupLabels"] == {"alertname": "level_high"}
    assert first.json["repeat"] is False

    add_services(h, ["s10"], 20)  # one more inside group_interval: one update listing the group
    second = h.wait_accepted(path, 2, timeout=FIRING_AFTER + 4)[1]
    assert alerts_of(second) == sorted([("firing", s) for s in SERVICES + ["s10"]]), alerts_of(second)
    assert len(h.rx.accepted(path)) == 2, "one update, not one message per alert"

    third = h.wait_accepted(path, 3, timeout=8 + FIRING_AFTER)[2]  # nothing changed: a reminder
    assert third.json["repeat"] is True
    assert len(third.json["alerts"]) == 11

    set_levels(h, SERVICES[:5], 1)
    fourth = h.wait_accepted(path, 4, timeout=FIRING_AFTER + 4)[3]
    assert alerts_of(fourth) == sorted([("resolved", s) for s in SERVICES[:5]] + [("firing", s) for s in SERVICES[5:] + ["s10"]])
    assert fourth.json["status"] == "firing"
    keys = [r.idempotency_key for r in h.rx.requests(path)]
    assert len(keys) == len(set(keys)), keys


def test_silence_holds_messages_until_it_ends(h: Harness) -> None:
    path = group_channel(h, "quiet")
    h.add_rule("level_high", 10, channel="quiet")
    h.sql("""INSERT INTO telltale_silences (matchers, ends_at, created_by, comment)
             VALUES ('alertname="level_high",svc="api"', now() + interval '1 hour', 'pytest', 'maintenance')""")
    tt = h.start()
    h.set_level(20)
    wait_until(lambda: scrape(tt).get("telltale_alert_state", rule="level_high", alertstate="silenced") == 1, FIRING_AFTER,
               "the alert firing, shown as silenced")
    assert "silenced (1)" in tt.get("/").text
    h.runs(tt, 3)
    assert h.sql("SELECT count(*) FROM telltale_alert_transitions WHERE flush_id IS NULL") == "1", "the transition waits"
    assert not h.rx.requests(path), "a silenced alert sends nothing"

    h.sql("UPDATE telltale_silences SET ends_at = now()")
    got = h.wait_accepted(path, 1)
    assert [a["status"] for a in got[0].json["alerts"]] == ["firing"], "still firing when the silence ended: notified"
    wait_until(lambda: scrape(tt).get("telltale_alert_state", rule="level_high", alertstate="firing") == 1, 10, "firing again")


def test_fired_and_resolved_while_silenced_sends_nothing(h: Harness) -> None:
    path = group_channel(h, "quiet")
    h.add_rule("level_high", 10, channel="quiet")
    h.sql("INSERT INTO telltale_silences (matchers, ends_at) VALUES ('svc=\"api\"', now() + interval '1 hour')")
    tt = h.start()
    h.set_level(20)
    h.level_seen(tt, 20)
    h.set_level(1)
    h.level_seen(tt, 1)
    wait_until(lambda: not scrape(tt).find("telltale_alert_state", rule="level_high"), 10, "the alert resolved")
    h.sql("UPDATE telltale_silences SET ends_at = now()")
    wait_until(lambda: h.sql("SELECT count(*) FROM telltale_alert_transitions WHERE flush_id IS NULL") == "0", FIRING_AFTER,
               "the held transitions settled")
    h.quiet(tt)
    assert not h.rx.requests(path), "nothing to tell: it fired and resolved while silenced"


def test_mute_time_window(h: Harness) -> None:
    path = group_channel(h, "muted", mute_time="always")
    h.sql("INSERT INTO telltale_mute_times (name, weekdays, start_time, end_time, time_zone) "
          "VALUES ('always', '', '00:00', '24:00', 'Europe/Berlin')")
    h.add_rule("level_high", 10, channel="muted")
    tt = h.start()
    h.set_level(20)
    wait_until(lambda: scrape(tt).get("telltale_alert_state", rule="level_high", alertstate="silenced") == 1, FIRING_AFTER,
               "muted by the channel's mute time")
    h.runs(tt, 3)
    assert not h.rx.requests(path)
    # The window moves to a day that is not today (in Berlin): the held alert goes out.
    h.sql("""UPDATE telltale_mute_times SET weekdays =
             lower(to_char((now() AT TIME ZONE 'Europe/Berlin') + interval '1 day', 'FMDay'))""")
    got = h.wait_accepted(path, 1)  # the edit reloads the mute times, and held messages are looked at again
    assert [a["status"] for a in got[0].json["alerts"]] == ["firing"]


def test_invalid_silences_and_mute_times_are_reported(h: Harness) -> None:
    h.add_channel("c", "webhook")
    h.sql("INSERT INTO telltale_silences (matchers, ends_at) VALUES ('svc=api', now() + interval '1 hour')")
    h.sql("INSERT INTO telltale_mute_times (name, time_zone) VALUES ('bad', 'Mars/Olympus')")
    h.add_rule("level_high", 10, channel="c")
    h.sql("UPDATE telltale_alert_rules SET mute_time = 'bad'")
    tt = h.start()
    wait_until(lambda: scrape(tt).get("telltale_alert_rule_errors", rule="mute_time:bad") == 1, 10, "the bad mute time reported")
    m = scrape(tt)
    assert m.get("telltale_alert_rule_errors", rule="level_high") == 1, "a rule naming an invalid mute time is invalid"
    assert any(labels.get("rule", "").startswith("silence:") for labels, _ in m.find("telltale_alert_rule_errors"))
    page = tt.get("/").text
    assert "Mars/Olympus" in page and "must be quoted" in page


def test_leader_killed_inside_group_wait_sends_the_group_once(h: Harness) -> None:
    # group_wait long enough that seeing the five transitions and killing the leader fits
    # inside it on a busy machine.
    group_wait = 8
    path = group_channel(h, "ha", group_wait_seconds=group_wait)
    h.add_rule("level_high", 10, channel="ha")
    add_services(h, SERVICES[:5])
    a = h.start()
    b = h.start(wait_leader=False)
    h.runs(a, 2)
    set_levels(h, SERVICES[:5], 20)
    wait_until(lambda: h.sql("SELECT count(*) FROM telltale_alert_transitions") == "5", FIRING_AFTER, "five transitions recorded")
    assert not h.rx.requests(path), "group_wait holds the message"
    a.stop(signal.SIGKILL)
    wait_until(lambda: scrape(b).get("telltale_alerting_leader") == 1, 20, "replica B leading")
    got = h.wait_accepted(path, 1, timeout=FIRING_AFTER + group_wait)
    h.quiet(b)
    assert len(h.rx.requests(path)) == 1, "one message for the group, across the change of leader"
    assert alerts_of(got[0]) == [("firing", s) for s in SERVICES[:5]]

    # Killed after the message was written but before it was sent: sent once after restart.
    h.sql("UPDATE telltale_channels SET enabled = false WHERE name = 'ha'")
    h.runs(b, 2)
    set_levels(h, SERVICES[:5], 1)
    wait_until(lambda: len(h.notifications()) == 2, FIRING_AFTER + 4, "the resolved group's message written")
    b.stop(signal.SIGKILL)
    h.sql("UPDATE telltale_channels SET enabled = true WHERE name = 'ha'")
    c = h.start()
    got = h.wait_accepted(path, 2)
    h.quiet(c)
    assert len(h.rx.requests(path)) == 2
    assert got[1].idempotency_key == h.notifications()[1]["idempotency_key"]
    assert alerts_of(got[1]) == [("resolved", s) for s in SERVICES[:5]]
