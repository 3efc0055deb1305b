import Foundation
import Glibc
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// An email per notification: `multipart/alternative` with a plain-text and an HTML part,
/// each base64-encoded (UTF-8, lines of 76 characters whatever the labels hold).
///
/// Rules, labels and descriptions are data from elsewhere: in headers they could end a
/// header and start another (`Bcc:`), in HTML they could be markup. So the only header built
/// from them, the subject, loses every control character and is RFC 2047-encoded when not
/// ASCII; addresses come validated (`EmailAddress`); the HTML part escapes everything.
enum EmailMessage {
    static let maxListedAlerts = 100
    static let maxSubjectLength = 200

    /// The whole message, CRLF line endings. `key` is the outbox row's idempotency key: its
    /// hash is the `Message-ID`, so a message sent again (after a crash before it was marked
    /// delivered) is recognisable as the same one.
    static func compose(_ notification: AlertNotification, settings: EmailSettings, key: String, date: Double) -> [UInt8] {
        let id = Digest.sha256Hex(key)
        let boundary = "=_telltale_" + id.prefix(32)
        let domain = settings.from.split(separator: "@").last.map(String.init) ?? "telltale.invalid"
        var lines = [
            "Date: \(rfc5322Date(date))",
            "From: Telltale <\(settings.from)>",
            "To: " + settings.to.joined(separator: ",\r\n "),
            "Subject: " + headerText(notification.headline),
            "Message-ID: <\(id)@\(domain)>",
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative; boundary=\"\(boundary)\"",
            "Auto-Submitted: auto-generated",
            "",
        ]
        for (type, text) in [("text/plain", plainText(notification)), ("text/html", html(notification))] {
            lines += ["--\(boundary)", "Content-Type: \(type); charset=utf-8", "Content-Transfer-Encoding: base64", "",
                      Data(text.utf8).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn,
                                                                    .endLineWithLineFeed])]
        }
        lines.append("--\(boundary)--")
        return Array((lines.joined(separator: "\r\n") + "\r\n").utf8)
    }

    /// A header value from data: control characters (CR, LF, NEL, line and paragraph
    /// separators…) become spaces; non-ASCII text becomes encoded words of at most 75
    /// characters, split between code points, on folded lines.
    static func headerText(_ text: String) -> String {
        let scalars = text.unicodeScalars.map { scalar -> Unicode.Scalar in
            switch scalar.properties.generalCategory {
            case .control, .lineSeparator, .paragraphSeparator: " "
            default: scalar
            }
        }
        let clean = String(String.UnicodeScalarView(scalars)).clipped(maxSubjectLength)
        guard !clean.unicodeScalars.allSatisfy(\.isASCII) else { return clean }
        var words: [String] = []
        var chunk = String.UnicodeScalarView()
        for scalar in clean.unicodeScalars {
            // 45 bytes make 60 base64 characters: with `=?UTF-8?B?` and `?=`, 72.
            if String(chunk).utf8.count + String(scalar).utf8.count > 45 {
                words.append(encodedWord(String(chunk)))
                chunk = String.UnicodeScalarView()
            }
            chunk.append(scalar)
        }
        if !chunk.isEmpty { words.append(encodedWord(String(chunk))) }
        return words.joined(separator: "\r\n ")
    }

    private static func encodedWord(_ text: String) -> String {
        "=?UTF-8?B?" + Data(text.utf8).base64EncodedString() + "?="
    }

    /// `Sat, 28 Nov 2026 15:50:03 +0000`, in English whatever the locale.
    static func rfc5322Date(_ seconds: Double) -> String {
        var time = time_t(Checked.int64(seconds) ?? 0)
        var parts = tm()
        _ = gmtime_r(&time, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let twoDigits = { (value: Int32) in value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday) % 7]), \(parts.tm_mday) \(months[Int(parts.tm_mon) % 12]) \(1900 + Int(parts.tm_year)) "
            + "\(twoDigits(parts.tm_hour)):\(twoDigits(parts.tm_min)):\(twoDigits(parts.tm_sec)) +0000"
    }

    /// The listed alerts by section (firing or test, then resolved), and how many were left out.
    private static func sections(_ notification: AlertNotification) -> (sections: [(String, [AlertEvent])], omitted: Int) {
        let listed = notification.alerts.prefix(maxListedAlerts)
        let active = notification.status == .test ? "Test" : "Firing"
        let sections = [(active, listed.filter { $0.status != .resolved }), ("Resolved", listed.filter { $0.status == .resolved })]
        return (sections.filter { !$0.1.isEmpty }, notification.alerts.count - listed.count)
    }

    static func plainText(_ notification: AlertNotification) -> String {
        var lines = [notification.headline, ""]
        let (sections, omitted) = sections(notification)
        for (title, alerts) in sections {
            lines.append("\(title) (\(alerts.count)):")
            for alert in alerts {
                lines.append("* \(alert.rule) (\(alert.environment), \(alert.severity))")
                if !alert.labels.isEmpty { lines.append("  labels: \(alert.labelsText)") }
                lines.append("  value: \(alert.valueText), condition: \(alert.conditionText)")
                lines.append("  since: \(UnixTime(seconds: alert.startsAt).iso8601)")
                if let endsAt = alert.endsAt { lines.append("  resolved: \(UnixTime(seconds: endsAt).iso8601)") }
                if let description = alert.description { lines.append("  " + description) }
            }
            lines.append("")
        }
        if omitted > 0 { lines.append("… and \(omitted) more.") }
        if let link = notification.alerts.first?.link { lines.append("Telltale: \(link)") }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    static func html(_ notification: AlertNotification) -> String {
        let colour = Channel.colour(notification.status).hex
        var html = "<!DOCTYPE html><html><body style=\"font-family: sans-serif\">"
            + "<h2 style=\"color: \(colour)\">\(notification.headline.htmlEscaped)</h2>"
        let (sections, omitted) = sections(notification)
        for (title, alerts) in sections {
            html += "<h3>\(title) (\(alerts.count))</h3><table border=\"1\" cellpadding=\"4\" style=\"border-collapse: collapse\">"
                + "<tr><th>Alert</th><th>Labels</th><th>Value</th><th>Condition</th><th>Since</th><th>Description</th></tr>"
            for alert in alerts {
                let cells = ["\(alert.rule) (\(alert.environment), \(alert.severity))", alert.labelsText, alert.valueText,
                             alert.conditionText, UnixTime(seconds: alert.startsAt).iso8601, alert.description ?? ""]
                html += "<tr>" + cells.map { "<td>\($0.htmlEscaped)</td>" }.joined() + "</tr>"
            }
            html += "</table>"
        }
        if omitted > 0 { html += "<p>… and \(omitted) more.</p>" }
        if let link = notification.alerts.first?.link { html += "<p><a href=\"\(link.htmlEscaped)\">Open Telltale</a></p>" }
        return html + "</body></html>\r\n"
    }
}
