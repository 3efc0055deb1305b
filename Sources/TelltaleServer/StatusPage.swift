import Foundation
import TelltaleAlerting
import TelltaleCore
import TelltaleMetrics

/// The operator's console on `/`: one server-rendered page, no JavaScript, readable on a
/// phone (tables scroll sideways on their own), reloading itself every `refreshSeconds`.
/// Everything on it comes from a `StatusReport`, which holds no secrets; every text from a
/// source (an error, a label) is escaped.
enum StatusPage {
    static let refreshSeconds = 15

    static func render(_ report: StatusReport) -> String {
        var sections: [String?] = [
            alertsSection(report), collectorsSection(report), queuesSection(report), balancesSection(report), probesSection(report),
        ]
        if let alerting = report.alerting {
            sections += [channelsSection(alerting, now: report.generatedAt), silencesSection(alerting, now: report.generatedAt),
                         rulesSection(alerting)]
        }
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta http-equiv="refresh" content="\(refreshSeconds)">
            <title>Telltale</title>
            <style>\(style)</style></head><body>
            <header><h1>Telltale <small>\(escape(report.version))</small></h1>
            \(summary(report))
            <nav><a href="/metrics">/metrics</a> · <a href="/api/v1/status">/api/v1/status</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></nav></header>
            \(sections.compactMap { $0 }.joined(separator: "\n"))
            <footer>Rendered \(escape(UnixTime(seconds: report.generatedAt).iso8601)); refreshes every \(refreshSeconds) s.</footer>
            </body></html>

            """
    }

    private static let style = """
        body{font-family:system-ui,sans-serif;margin:0 auto;padding:.8em;max-width:70em;color:#222;background:#fafafa}
        h1{font-size:1.4em;margin:.2em 0}h1 small{font-weight:normal;color:#666}h2{font-size:1.1em;margin:1.2em 0 .4em}
        .scroll{overflow-x:auto}table{border-collapse:collapse;background:#fff;min-width:100%}
        td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;white-space:nowrap;vertical-align:top}
        td.num{text-align:right;font-variant-numeric:tabular-nums}td.wrap{white-space:normal;min-width:12em}
        .bad{color:#b00020;font-weight:bold}.warn{color:#a35c00;font-weight:bold}.good{color:#1b7f1b}.muted{color:#777}
        .badge{display:inline-block;padding:.1em .5em;border-radius:.8em;margin-right:.4em;background:#eee}
        footer,nav{color:#666;font-size:.9em;margin:.4em 0}
        """

    private static func summary(_ report: StatusReport) -> String {
        let failing = report.collectors.filter { $0.state == "failed" }.count
        let firing = report.alerting?.alerts.filter { $0.state == "firing" }.count ?? 0
        var badges = [badge("\(report.collectors.count) collectors", failing > 0 ? "\(failing) failing" : nil)]
        if let alerting = report.alerting {
            let role = alerting.leader ? "alerting leader (sends notifications)" : "alerting follower (evaluates only)"
            badges.append(badge(role, firing > 0 ? "\(firing) firing" : nil))
            if let error = alerting.databaseError { badges.append("<span class=\"badge bad\">alerting database: \(escape(error))</span>") }
        }
        return "<p>" + badges.joined() + "</p>"
    }

    private static func badge(_ text: String, _ problem: String?) -> String {
        problem.map { "<span class=\"badge\">\(escape(text)): <span class=\"bad\">\(escape($0))</span></span>" }
            ?? "<span class=\"badge\">\(escape(text))</span>"
    }

    private static func alertsSection(_ report: StatusReport) -> String? {
        guard let alerting = report.alerting else { return nil }
        let rows = alerting.alerts.map { alert in
            let labels = alert.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ", ")
            let state = alert.state == "nodata" ? "no data" : alert.state
            return [cell(alert.rule), cell(alert.severity), cell(state, stateClass(alert.state)),
                    number(alert.value), cell(alert.condition), age(alert.since, now: report.generatedAt), cell(labels, "wrap")]
        }
        return table("Alerts", ["rule", "severity", "state", "value", "condition", "since", "labels"], rows, empty: "No alert is pending or firing.")
    }

    private static func collectorsSection(_ report: StatusReport) -> String {
        let rows = report.collectors.map { collector in
            [cell(collector.name), cell(collector.state, stateClass(collector.state)),
             cell(collector.lastDurationSeconds.map(formatSeconds) ?? "–", "num"),
             collector.lastSuccess.map { age($0, now: report.generatedAt) } ?? cell("never", "muted"),
             cell(collector.lastError ?? "", "wrap")]
        }
        return table("Collectors", ["collector", "state", "last duration", "last success", "last error"], rows, empty: "No collector runs.")
    }

    private static func queuesSection(_ report: StatusReport) -> String? {
        guard report.queueCount > 0 else { return nil }
        let rows = report.queues.map { queue in
            let name = [queue.labels["redis"], queue.labels["prefix"], queue.labels["queue"]].compactMap { $0 }.joined(separator: " / ")
            let state = !queue.up ? cell("unreadable", "bad") : queue.paused ? cell("paused", "warn") : cell("running", "good")
            return [cell(name), state, number(queue.waiting), number(queue.jobs["active"]), number(queue.jobs["delayed"]),
                    number(queue.failed, problem: queue.failed > 0), cell(queue.oldestWaitingSeconds.map(formatAge) ?? "–", "num")]
        }
        let title = report.queueCount > report.queues.count ? "Queues (\(report.queues.count) of \(report.queueCount))" : "Queues"
        return table(title, ["queue", "state", "waiting", "active", "delayed", "failed", "oldest waiting"], rows, empty: "")
    }

    private static func balancesSection(_ report: StatusReport) -> String? {
        guard !report.balances.isEmpty else { return nil }
        let rows = report.balances.map { balance in
            [cell(balance.provider), cell(balance.currency), number(balance.balance), number(balance.pending),
             balance.stale ? cell("stale", "bad") : cell("fresh", "good"),
             balance.lastSuccess.map { age($0, now: report.generatedAt) } ?? cell("never", "muted")]
        }
        return table("Provider balances", ["provider", "currency", "balance", "pending", "data", "last good fetch"], rows, empty: "")
    }

    private static func probesSection(_ report: StatusReport) -> String? {
        guard !report.probes.isEmpty else { return nil }
        let rows = report.probes.map { probe in
            [cell(probe.target), probe.success ? cell("ok", "good") : cell("failing", "bad"), number(probe.statusCode),
             cell(probe.errorRatio.map { "\(Int(Checked.int($0 * 100) ?? 0)) %" } ?? "–", "num")]
        }
        return table("Probes", ["target", "result", "status", "errors in window"], rows, empty: "")
    }

    private static func channelsSection(_ alerting: AlertingStatus, now: Double) -> String {
        let rows = alerting.channels.map { channel in
            [cell(channel.name), cell(channel.kind), channel.failing ? cell("failing", "bad") : cell("ok", "good"),
             number(channel.queueDepth.map(Double.init), problem: (channel.queueDepth ?? 0) > 0),
             channel.lastDelivery.map { age($0, now: now) } ?? cell("never", "muted"),
             channel.lastFailure.map { age($0, now: now) } ?? cell("never", "muted"), cell(channel.lastNotification, "wrap")]
        }
        return table("Channels", ["channel", "kind", "state", "queued", "last delivery", "last failure", "last notification"], rows,
                     empty: "No channel is configured.")
    }

    private static func silencesSection(_ alerting: AlertingStatus, now: Double) -> String? {
        guard !alerting.silences.isEmpty else { return nil }
        let rows = alerting.silences.map { silence in
            [cell(String(silence.id), "num"), cell(silence.matchers, "wrap"),
             cell(silence.startsAt > now ? "from \(UnixTime(seconds: silence.startsAt).iso8601)" : "active"),
             cell(UnixTime(seconds: silence.endsAt).iso8601)]
        }
        return table("Silences", ["id", "matchers", "state", "ends"], rows, empty: "")
    }

    /// Every rule with its state in short, rules with an invalid row (or over their regex
    /// budget) first.
    private static func rulesSection(_ alerting: AlertingStatus) -> String {
        let rules = alerting.rules.filter { $0.error != nil } + alerting.rules.filter { $0.error == nil }
        let rows = rules.map { rule in
            [cell(rule.name), cell(rule.state.isEmpty ? "inactive" : rule.state), cell(rule.error ?? "", "wrap bad")]
        }
        return table("Rules", ["rule", "state", "error"], rows, empty: "No rule is loaded.")
    }

    // MARK: cells

    private static func table(_ title: String, _ headers: [String], _ rows: [[String]], empty: String) -> String {
        let body = rows.isEmpty
            ? "<tr><td colspan=\"\(headers.count)\" class=\"muted\">\(escape(empty))</td></tr>"
            : rows.map { "<tr>" + $0.joined() + "</tr>" }.joined(separator: "\n")
        return """
            <section><h2>\(escape(title))</h2><div class="scroll"><table>
            <tr>\(headers.map { "<th>\(escape($0))</th>" }.joined())</tr>
            \(body)
            </table></div></section>
            """
    }

    private static func cell(_ text: String, _ style: String? = nil) -> String {
        "<td\(style.map { " class=\"\($0)\"" } ?? "")>\(escape(text))</td>"
    }

    private static func number(_ value: Double?, problem: Bool = false) -> String {
        cell(value.map(formatNumber) ?? "–", problem ? "num bad" : "num")
    }

    private static func age(_ time: Double, now: Double) -> String {
        "<td class=\"num\" title=\"\(escape(UnixTime(seconds: time).iso8601))\">\(escape(formatAge(now - time))) ago</td>"
    }

    private static func stateClass(_ state: String) -> String {
        switch state {
        case "failed", "firing": "bad"
        case "pending", "nodata", "silenced": "warn"
        case "ok": "good"
        default: "muted"
        }
    }

    static func escape(_ text: String) -> String {
        text.htmlEscaped
    }

    static func formatSeconds(_ seconds: Double) -> String {
        seconds < 1 ? "\(Checked.int((seconds * 1000).rounded()) ?? 0) ms" : "\((seconds * 100).rounded() / 100) s"
    }

    /// `42 s`, `5 min`, `3 h`, `2 d`: a duration as a glance needs it.
    static func formatAge(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "–" }
        let whole = Checked.int(max(0, seconds).rounded()) ?? Int.max
        switch whole {
        case ..<120: return "\(whole) s"
        case ..<7200: return "\(whole / 60) min"
        case ..<172_800: return "\(whole / 3600) h"
        default: return "\(whole / 86400) d"
        }
    }

    /// Integers without a fraction, others with up to 4 significant decimals.
    static func formatNumber(_ value: Double) -> String {
        guard value.isFinite else { return String(value) }
        if value == value.rounded(), abs(value) < 1e15 { return String(Checked.int(value) ?? 0) }
        return String(format: "%.4g", value)
    }
}
