"""scripts/bench/alert_eval_rules.py — the 1,000 rules of scripts/bench/alert-eval.sh, written
once and emitted twice: as rows of telltale_alert_rules (SQL) and as one Prometheus rule group
(YAML), so that both evaluate exactly the same expressions.

Usage: python3 alert_eval_rules.py RULES.sql RULES.yml INTERVAL_SECONDS

The series (scripts/bench/alert-eval.sh's SQL queries): bench_queue_depth (gauge) and
bench_jobs_total (counter), each over svc s1..s1000 × queue q1..q50 (100,000 series).
"""
import json
import sys

WINDOW = 300  # seconds: the windowed rules' 5 m


def rules():
    """(name, metric, matchers, function, window, aggregate, aggregate_by, comparison, threshold)."""
    out = []

    def add(kind, metric, matchers, comparison, threshold, function="value", window=None, aggregate=None, by=""):
        out.append((f"bench_{len(out):04d}_{kind}", metric, matchers, function, window, aggregate, by, comparison, threshold))

    for i in range(300):   # instant, equality matchers; about 1 % of them fire (the gauge reaches 99)
        add("eq", "bench_queue_depth", f'svc="s{i * 3 + 1}",queue="q{i % 50 + 1}"', ">", 98)
    for i in range(100):   # instant, a regex over the service and an equality over the queue; never fire
        add("re", "bench_queue_depth", f'svc=~"s{i + 1}[0-9]",queue="q{i % 50 + 1}"', ">", 1000)
    for i in range(150):   # increase of the counter over 5 m, one service (50 series)
        add("increase", "bench_jobs_total", f'svc="s{i * 5 + 2}"', ">", 1e9, "increase", WINDOW)
    for i in range(100):   # rate over 5 m
        add("rate", "bench_jobs_total", f'svc="s{i * 7 + 3}"', ">", 1e6, "rate", WINDOW)
    for i in range(100):   # avg_over_time of the gauge over 5 m
        add("avg", "bench_queue_depth", f'svc="s{i * 9 + 4}"', ">", 99, "avg_over_time", WINDOW)
    for i in range(100):   # sum by queue over a regex (about 11 services × 50 queues)
        add("sum", "bench_queue_depth", f'svc=~"s{i + 1}[0-9]?"', ">", 1e6, aggregate="sum", by="queue")
    for i in range(100):   # max by svc over one queue and a regex
        add("max", "bench_queue_depth", f'queue="q{i % 50 + 1}",svc=~"s{i + 1}[0-9]?"', ">", 1000, aggregate="max", by="svc")
    for i in range(50):    # windowed and aggregated: sum by queue of increase over 5 m
        add("sumincrease", "bench_jobs_total", f'svc="s{i * 11 + 5}"', ">", 1e9, "increase", WINDOW, "sum", "queue")
    assert len(out) == 1000
    return out


def promql(metric, matchers, function, window, aggregate, by, comparison, threshold):
    text = f"{metric}{{{matchers}}}"
    if function != "value":
        text = f"{function}({text}[{window}s])"
    if aggregate:
        text = f"{aggregate} by ({by}) ({text})"
    return f"{text} {comparison} {threshold:g}"


def sql_text(value):
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def main():
    sql_path, yml_path, interval = sys.argv[1], sys.argv[2], sys.argv[3]
    rows = rules()
    with open(sql_path, "w") as sql:
        sql.write("INSERT INTO telltale_alert_rules (name, environment, metric, matchers, function, window_seconds,"
                  " aggregate, aggregate_by, comparison, threshold) VALUES\n")
        sql.write(",\n".join(
            f"({sql_text(name)}, 'any', {sql_text(metric)}, {sql_text(matchers)}, {sql_text(function)},"
            f" {'NULL' if window is None else window}, {sql_text(aggregate)}, {sql_text(by)}, {sql_text(comparison)}, {threshold!r})"
            for name, metric, matchers, function, window, aggregate, by, comparison, threshold in rows) + ";\n")
    with open(yml_path, "w") as yml:
        # JSON is YAML: one group, evaluated every INTERVAL seconds.
        json.dump({"groups": [{"name": "bench", "interval": f"{interval}s", "rules": [
            {"alert": name, "expr": promql(*rest)} for name, *rest in rows]}]}, yml, indent=1)
    print(json.dumps({kind: sum(1 for r in rows if r[0].split("_")[2] == kind)
                      for kind in dict.fromkeys(r[0].split("_")[2] for r in rows)}))


if __name__ == "__main__":
    main()
