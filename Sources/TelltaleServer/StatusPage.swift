import Foundation
import TelltaleAlerting
import TelltaleCore
import TelltaleMetrics

/// The small HTML page on `/`: version, collectors and their state. It shows only what the
/// collectors put in their status, which never holds secrets.
enum StatusPage {
    static func render(_ statuses: [CollectorStatus], alerting: AlertingStatus? = nil) -> String {
        let rows = statuses.map { status in
            let duration = status.lastDuration.map { formatSeconds($0.seconds) } ?? "–"
            let success = status.lastSuccess.map(\.iso8601) ?? "never"
            return "<tr class=\"\(status.state.rawValue)\"><td>\(escape(status.name))</td><td>\(status.state.rawValue)</td>"
                + "<td>\(duration)</td><td>\(success)</td><td>\(escape(status.lastError ?? ""))</td></tr>"
        }.joined(separator: "\n")
        return """
            <!DOCTYPE html>
            <html><head><meta charset="utf-8"><title>Telltale</title>
            <style>
            body{font-family:system-ui,sans-serif;margin:2em;color:#222}
            table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
            tr.failed td:nth-child(2){color:#b00;font-weight:bold}tr.ok td:nth-child(2){color:#070}
            </style></head><body>
            <h1>Telltale \(escape(TelltaleVersion.current))</h1>
            <p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a></p>
            <h2>Collectors</h2>
            <table><tr><th>collector</th><th>state</th><th>last duration</th><th>last success</th><th>last error</th></tr>
            \(rows)
            </table>
            \(alerting.map(alertingSection) ?? "")
            </body></html>

            """
    }

    static func alertingSection(_ status: AlertingStatus) -> String {
        let rules = status.rules.map { rule in
            "<tr><td>\(escape(rule.name))</td><td>\(escape(rule.state))</td><td>\(escape(rule.error ?? ""))</td></tr>"
        }.joined(separator: "\n")
        let channels = status.channels.map { channel in
            "<tr><td>\(escape(channel.name))</td><td>\(escape(channel.kind))</td>"
                + "<td>\(channel.failing ? "failing" : "ok")</td><td>\(escape(channel.lastNotification))</td></tr>"
        }.joined(separator: "\n")
        let role = status.leader ? "leader (sends notifications)" : "follower (evaluates only)"
        let database = status.databaseError.map { "<p class=\"failed\">database: \(escape($0))</p>" } ?? ""
        return """
            <h2>Alerting</h2>
            <p>This replica: \(role)</p>\(database)
            <table><tr><th>rule</th><th>state</th><th>error</th></tr>
            \(rules)
            </table>
            <h3>Channels</h3>
            <table><tr><th>channel</th><th>kind</th><th>state</th><th>last notification</th></tr>
            \(channels)
            </table>
            """
    }

    static func escape(_ text: String) -> String {
        text.htmlEscaped
    }

    static func formatSeconds(_ seconds: Double) -> String {
        seconds < 1 ? "\(Int((seconds * 1000).rounded())) ms" : "\((seconds * 100).rounded() / 100) s"
    }
}
