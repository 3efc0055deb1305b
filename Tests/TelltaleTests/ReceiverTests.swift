import Foundation
import Logging
import TelltaleMetrics
import Testing
@testable import TelltaleAlerting
@testable import TelltaleClients
@testable import TelltaleCore

/// Payloads and settings of the PagerDuty, email and Alertmanager receivers.
private func event(_ status: AlertEvent.Status = .firing, rule: String = "disk-full", severity: String = "critical",
                   labels: [String: String] = ["mount": "/"], description: String? = "disk nearly full",
                   startsAt: Double = 1_800_000_000) -> AlertEvent {
    AlertEvent(rule: rule, environment: "production", severity: severity, status: status, metric: "disk_used_ratio",
               comparison: ">", threshold: 0.9, value: 0.97, labels: labels, description: description, startsAt: startsAt,
               endsAt: status == .resolved ? startsAt + 300 : nil, link: "https://telltale.example/")
}

@Suite struct PagerDutyTests {
    @Test func triggerCarriesSummarySeverityAndDetails() throws {
        let body = PagerDutyMessage.payload(AlertNotification(single: event()), channel: "oncall", routingKey: "R0UTINGKEY")
        #expect(body["routing_key"]?.string == "R0UTINGKEY")
        #expect(body["event_action"]?.string == "trigger")
        let payload = try #require(body["payload"])
        #expect(payload["summary"]?.string == "[FIRING] disk-full (production, critical)")
        #expect(payload["severity"]?.string == "critical")
        #expect(payload["source"]?.string == "production")
        #expect(payload["timestamp"]?.string == "2027-01-15T08:00:00Z")
        let details = try #require(payload["custom_details"])
        #expect(details["firing"] == .strings([#"disk-full {mount="/"}: value 0.97 (disk_used_ratio > 0.9)"#]))
        #expect(body["links"]?.array?.first?["href"]?.string == "https://telltale.example/")
    }

    @Test func triggerAndResolveShareOneDedupKeyWithoutTheSecret() throws {
        let trigger = PagerDutyMessage.payload(AlertNotification(single: event()), channel: "oncall", routingKey: "KEY")
        let resolve = PagerDutyMessage.payload(AlertNotification(single: event(.resolved)), channel: "oncall", routingKey: "KEY")
        let key = try #require(trigger["dedup_key"]?.string)
        #expect(resolve["dedup_key"]?.string == key)
        #expect(resolve["event_action"]?.string == "resolve")
        #expect(resolve["payload"] == nil)
        #expect(key.count <= 255 && !key.contains("KEY") && !key.contains("disk"))
        let otherChannel = PagerDutyMessage.payload(AlertNotification(single: event()), channel: "other", routingKey: "KEY")
        #expect(otherChannel["dedup_key"]?.string != key)
    }

    @Test func severitiesMapToPagerDutysFour() {
        #expect(PagerDutyMessage.severity(["warning", "critical"]) == "critical")
        #expect(PagerDutyMessage.severity(["error"]) == "error")
        #expect(PagerDutyMessage.severity(["INFO"]) == "info")
        #expect(PagerDutyMessage.severity(["whatever"]) == "warning")
        #expect(PagerDutyMessage.severity([]) == "warning")
    }

    @Test func digestIsSHA256() {
        #expect(Digest.sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

@Suite struct AlertmanagerMessageTests {
    @Test func alertHasPrometheusLabelsAndAnnotations() throws {
        let alert = AlertmanagerMessage.alert(event(labels: ["mount": "/", "empty": ""]), validUntil: 1_800_000_240)
        #expect(alert["labels"] == .strings([
            "alertname": "disk-full", "severity": "critical", "environment": "production", "mount": "/",
        ]))
        let annotations = try #require(alert["annotations"])
        #expect(annotations["description"]?.string == "disk nearly full")
        #expect(annotations["value"]?.string == "0.97")
        #expect(annotations["threshold"]?.string == "disk_used_ratio > 0.9")
        #expect(annotations["summary"]?.string?.contains("disk-full") == true)
        #expect(alert["startsAt"]?.string == "2027-01-15T08:00:00Z")
        #expect(alert["endsAt"]?.string == "2027-01-15T08:04:00Z")
        #expect(alert["generatorURL"]?.string == "https://telltale.example/")
    }

    @Test func resolvedAlertEndsWhenItResolved() {
        let alert = AlertmanagerMessage.alert(event(.resolved), validUntil: 1_900_000_000)
        #expect(alert["endsAt"]?.string == "2027-01-15T08:05:00Z")
    }

    @Test func urlsAndEndpoints() {
        #expect(AlertmanagerMessage.urls(" http://a:9093, http://b:9093\nhttp://c/am/ ") == ["http://a:9093", "http://b:9093", "http://c/am/"])
        #expect(AlertmanagerMessage.endpoint("http://c/am/") == "http://c/am/api/v2/alerts")
        #expect(AlertmanagerMessage.endpoint("http://a:9093/api/v2/alerts") == "http://a:9093/api/v2/alerts")
    }

    @Test func validityFollowsPrometheus() {
        #expect(AlertmanagerSender.validity(interval: .seconds(10)) == 240)
        #expect(AlertmanagerSender.validity(interval: .seconds(120)) == 480)
    }

    @Test func bookResendsFiringAndRetainsResolved() {
        var book = AlertmanagerBook()
        let firing = event()
        book.update(firing: [("am", firing)], resolved: [], now: 100)
        #expect(book.due(now: 100)["am"]?.count == 1)
        book.settle([firing], channel: "am", accepted: true, now: 100, retryAfter: 10)
        book.update(firing: [("am", firing)], resolved: [], now: 110)
        #expect(book.due(now: 110).isEmpty)
        #expect(book.due(now: 160)["am"]?.count == 1, "re-sent after the resend delay")
        book.settle([firing], channel: "am", accepted: false, now: 160, retryAfter: 10)
        #expect(book.due(now: 165).isEmpty)
        #expect(book.due(now: 170)["am"]?.count == 1, "retried after the interval when no Alertmanager accepted")

        book.update(firing: [], resolved: [("am", event(.resolved))], now: 200)
        #expect(book.due(now: 200)["am"]?.first?.status == .resolved, "a resolution is due at once")
        book.settle([event(.resolved)], channel: "am", accepted: true, now: 200, retryAfter: 10)
        book.update(firing: [], resolved: [], now: 260)
        #expect(book.due(now: 260)["am"]?.first?.status == .resolved, "and re-sent while retained")
        // Resolved at startsAt + 300 = 1_800_000_300; retained for 15 minutes after.
        book.update(firing: [], resolved: [], now: 1_800_000_300 + 901)
        #expect(book.entries.isEmpty)
    }

    @Test func firingAlertNoLongerRoutedIsDropped() {
        var book = AlertmanagerBook()
        book.update(firing: [("am", event())], resolved: [], now: 0)
        book.update(firing: [], resolved: [], now: 1)
        #expect(book.entries.isEmpty)
    }

    @Test func settleIgnoresAnAlertThatChangedMeanwhile() {
        var book = AlertmanagerBook()
        book.update(firing: [("am", event())], resolved: [], now: 0)
        book.update(firing: [], resolved: [("am", event(.resolved))], now: 1)
        book.settle([event()], channel: "am", accepted: true, now: 2, retryAfter: 10)
        #expect(book.due(now: 2)["am"]?.first?.status == .resolved)
    }

    @Test func outboxSkipsAlertmanagerChannels() {
        var catalog = RuleCatalog()
        catalog.channels["am"] = Channel(name: "am", kind: .alertmanager, url: "http://am:9093", enabled: true)
        catalog.channels["chat"] = Channel(name: "chat", kind: .slack, url: "https://hooks", enabled: true)
        for (name, channel) in [("a", "am"), ("b", "chat")] {
            catalog.rules[name] = AlertRule(name: name, environment: "p", metric: "m", matchers: [], comparison: .greater,
                                            threshold: 1, clearThreshold: nil, forDuration: .zero, keepFiring: .zero,
                                            severity: "warning", channel: channel, description: nil)
        }
        #expect(catalog.outboxChannels["a"] == .some(nil))
        #expect(catalog.outboxChannels["b"] == "chat")
    }
}

/// The message's header lines (unfolded) and its decoded parts by content type.
private func parse(_ message: [UInt8]) throws -> (headers: [String], parts: [String: String]) {
    let text = String(decoding: message, as: UTF8.self)
    let sections = text.components(separatedBy: "\r\n\r\n")
    let headers = sections[0].replacingOccurrences(of: "\r\n ", with: " ").components(separatedBy: "\r\n")
    let boundaryHeader = try #require(headers.first { $0.hasPrefix("Content-Type: multipart/alternative") })
    let boundary = try #require(boundaryHeader.components(separatedBy: "boundary=\"").last?.dropLast())
    var parts: [String: String] = [:]
    for part in text.components(separatedBy: "--\(boundary)").dropFirst() where !part.hasPrefix("--") {
        let pieces = part.components(separatedBy: "\r\n\r\n")
        let type = try #require(pieces[0].components(separatedBy: "Content-Type: ").last?.components(separatedBy: ";").first)
        let data = try #require(Data(base64Encoded: pieces[1].replacingOccurrences(of: "\r\n", with: "")))
        parts[type] = String(decoding: data, as: UTF8.self)
    }
    return (headers, parts)
}

@Suite struct EmailMessageTests {
    let settings = EmailSettings(from: "alerts@example.com", to: ["a@example.com", "b@example.org"], security: .starttls)

    @Test func multipartWithPlainTextAndHTML() throws {
        let message = EmailMessage.compose(AlertNotification(single: event()), settings: settings, key: "k1", date: 1_800_000_000)
        let (headers, parts) = try parse(message)
        #expect(headers.contains("Subject: [FIRING] disk-full (production, critical)"))
        #expect(headers.contains("From: Telltale <alerts@example.com>"))
        #expect(headers.contains("To: a@example.com, b@example.org"))
        #expect(headers.contains("Date: Fri, 15 Jan 2027 08:00:00 +0000"))
        #expect(headers.contains("Message-ID: <\(Digest.sha256Hex("k1"))@example.com>"))
        #expect(parts["text/plain"]?.contains("value: 0.97, condition: disk_used_ratio > 0.9") == true)
        #expect(parts["text/html"]?.contains("<td>mount=/</td>") == true)
        let again = EmailMessage.compose(AlertNotification(single: event()), settings: settings, key: "k1", date: 1_800_000_060)
        #expect(try parse(again).headers.contains("Message-ID: <\(Digest.sha256Hex("k1"))@example.com>"), "a re-send keeps its id")
        for line in String(decoding: message, as: UTF8.self).components(separatedBy: "\r\n") {
            #expect(line.utf8.count <= 998 && !line.contains("\n") && !line.contains("\r"))
        }
    }

    @Test func dataCannotAddHeaders() throws {
        let hostile = event(rule: "x\r\nBcc: victim@example.net\r\n", severity: "critical\nX-Evil: 1",
                            labels: ["a": "\r\n\r\n--boundary"], description: "\r\n.\r\nMAIL FROM:<x@y>")
        let message = EmailMessage.compose(AlertNotification(single: hostile), settings: settings, key: "k", date: 0)
        let (headers, _) = try parse(message)
        #expect(!headers.contains { $0.hasPrefix("Bcc") || $0.hasPrefix("X-Evil") })
        #expect(headers.filter { $0.hasPrefix("Subject: ") }.count == 1)
        #expect(EmailMessage.headerText("a\u{85}b\u{2028}c\u{0}d") == "a b c d")
    }

    @Test func htmlEscapesEverythingFromData() throws {
        let hostile = event(rule: "<b>rule</b>", labels: ["x": "\"><img src=x onerror=alert(1)>"], description: "<script>alert('x')</script>&")
        let (_, parts) = try parse(EmailMessage.compose(AlertNotification(single: hostile), settings: settings, key: "k", date: 0))
        let html = try #require(parts["text/html"])
        #expect(!html.contains("<script") && !html.contains("<img") && !html.contains("<b>rule"))
        #expect(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"))
        #expect(parts["text/plain"]?.contains("<script>") == true, "plain text stays as written")
    }

    @Test func nonASCIISubjectIsEncodedInShortWords() throws {
        let long = event(rule: String(repeating: "é", count: 120))
        let (headers, _) = try parse(EmailMessage.compose(AlertNotification(single: long), settings: settings, key: "k", date: 0))
        let subject = try #require(headers.first { $0.hasPrefix("Subject: ") })
        let words = subject.dropFirst("Subject: ".count).split(separator: " ")
        #expect(words.count > 1 && words.allSatisfy { $0.hasPrefix("=?UTF-8?B?") && $0.hasSuffix("?=") && $0.count <= 75 })
        let decoded = words.map { word in
            String(decoding: Data(base64Encoded: String(word.dropFirst(10).dropLast(2))) ?? Data(), as: UTF8.self)
        }.joined()
        #expect(decoded.hasPrefix("[FIRING] ééé") && decoded.count <= EmailMessage.maxSubjectLength)
    }

    @Test func groupListsFiringThenResolved() throws {
        let group = AlertNotification(groupKey: "{alertname=\"disk-full\"}", groupLabels: ["alertname": "disk-full"],
                                      alerts: [event(.resolved, labels: ["mount": "/var"]), event(), event(labels: ["mount": "/home"])],
                                      isRepeat: false)
        let (headers, parts) = try parse(EmailMessage.compose(group, settings: settings, key: "g", date: 0))
        #expect(headers.contains("Subject: [FIRING:2, RESOLVED:1] alertname=disk-full"))
        let text = try #require(parts["text/plain"])
        let firing = try #require(text.range(of: "Firing (2):"))
        let resolved = try #require(text.range(of: "Resolved (1):"))
        #expect(firing.lowerBound < resolved.lowerBound)
    }
}

@Suite struct ReceiverSettingsTests {
    let secrets: ChannelSecrets = {
        var config = AlertingConfig()
        config.channelFileDirectory = "/nonexistent-telltale-dir"
        return ChannelSecrets(config)
    }()

    private func validate(_ kind: Channel.Kind, _ secret: String, _ row: ReceiverSettings.Row = .init()) -> Result<Channel, FileProblem> {
        Channel.validated(name: "c", kind: kind, secret: secret, enabled: true, row: row, secrets: secrets)
    }

    @Test func emailNeedsValidAddressesAndConsistentTLS() throws {
        let url = "smtp://user:p%40ss@mail.example.com:587"
        var row = ReceiverSettings.Row(emailFrom: "alerts@example.com", emailTo: " a@example.com , b@example.org ")
        let channel = try validate(.email, url, row).get()
        #expect(channel.settings.email == EmailSettings(from: "alerts@example.com", to: ["a@example.com", "b@example.org"],
                                                        security: .starttls))
        for bad in ["a@example.com\r\nBcc: x@y.z", "Name <a@example.com>", "a@b", "a@@example.com", "a b@example.com", ""] {
            row.emailTo = bad
            #expect((try? validate(.email, url, row).get()) == nil, "\(bad)")
        }
        row.emailTo = Array(repeating: "a@example.com", count: EmailSettings.maxRecipients + 1).joined(separator: ",")
        #expect((try? validate(.email, url, row).get()) == nil)
        row.emailTo = "a@example.com"
        row.smtpTLS = "none"
        #expect((try? validate(.email, "smtps://u:p@mail.example.com", row).get()) == nil)
        #expect(try validate(.email, "smtp://relay.example.com:25", row).get().settings.email?.security == EmailSettings.Security.none)
        row.smtpTLS = "maybe"
        #expect((try? validate(.email, url, row).get()) == nil)
        row.smtpTLS = nil
        for badURL in ["https://mail.example.com", "smtp://", "smtp://user:secret@"] {
            guard case .failure(let problem) = validate(.email, badURL, row) else { Issue.record("\(badURL)"); continue }
            #expect(!problem.description.contains("secret"))
        }
    }

    @Test func pagerDutyKeyAndEndpoint() throws {
        #expect(try validate(.pagerduty, "0123456789abcdef0123456789abcdef").get().settings.endpoint == nil)
        #expect((try? validate(.pagerduty, "has space").get()) == nil)
        let eu = ReceiverSettings.Row(endpoint: "https://events.eu.pagerduty.com/v2/enqueue")
        #expect(try validate(.pagerduty, "KEY", eu).get().settings.endpoint == "https://events.eu.pagerduty.com/v2/enqueue")
        #expect((try? validate(.pagerduty, "KEY", .init(endpoint: "ftp://x")).get()) == nil)
        #expect((try? validate(.slack, "https://hooks", eu).get()) == nil, "endpoint is for pagerduty only")
        #expect((try? validate(.webhook, "https://hooks", .init(emailTo: "a@example.com")).get()) == nil)
    }

    @Test func alertmanagerURLs() {
        #expect((try? validate(.alertmanager, "http://a:9093, https://b:9093").get()) != nil)
        #expect((try? validate(.alertmanager, "http://a:9093, mailto:x").get()) == nil)
        #expect((try? validate(.alertmanager, " , ").get()) == nil)
        let many = (0...AlertmanagerMessage.maxURLs).map { "http://am\($0):9093" }.joined(separator: " ")
        #expect((try? validate(.alertmanager, many).get()) == nil)
    }

    @Test func caFileMustBeBelowTheChannelDirectory() {
        guard case .failure(let problem) = validate(.webhook, "https://hooks", .init(caFile: "/etc/passwd")) else {
            Issue.record("accepted a CA file outside the directory")
            return
        }
        #expect(problem.description.contains("ca_file"))
    }

    @Test func redactorHidesURLsAndPasswords() {
        let channel = Channel(name: "m", kind: .email, url: "smtps://user:s%3Fcret@mail.example.com", enabled: true)
        let text = channel.redactor.redact("login failed for s?cret at smtps://user:s%3Fcret@mail.example.com")
        #expect(!text.contains("s?cret") && !text.contains("s%3Fcret"))
        let managers = Channel(name: "a", kind: .alertmanager, url: "http://u:pw-1234@a:9093 http://b:9093", enabled: true)
        #expect(managers.redactor.redact("failed: http://b:9093/api/v2/alerts, pw-1234") == "failed: ***/api/v2/alerts, ***")
    }
}

@Suite struct AlertmanagerHookTests {
    /// A rule routed to an Alertmanager channel, with one series firing.
    private func firingSetup() -> (RuleCatalog, Evaluator) {
        var catalog = RuleCatalog()
        catalog.channels["am"] = Channel(name: "am", kind: .alertmanager, url: "http://am:9093", enabled: true)
        catalog.rules["high"] = AlertRule(name: "high", environment: "p", metric: "level", matchers: [], comparison: .greater,
                                          threshold: 1, clearThreshold: nil, forDuration: .zero, keepFiring: .zero,
                                          severity: "warning", channel: "am", description: nil)
        var builder = FamilyBuilder(MetricDescriptor("level", .gauge, help: "h"))
        builder.set(5, ["svc": "api"])
        var evaluator = Evaluator()
        _ = evaluator.evaluate(catalog, MetricSnapshot(families: [builder.build()]), now: 0, link: nil)
        return (catalog, evaluator)
    }

    private func service() -> AlertingService {
        var config = AlertingConfig()
        config.dsn = "postgres://nobody@127.0.0.1:1/none"
        return AlertingService(config: config, store: MetricStore(), logger: Logger(label: "test"), now: { UnixTime(seconds: 10) })
    }

    @Test func leaderHandsFiringAlertsToTheSenderUnlessSilenced() {
        let (catalog, evaluator) = firingSetup()
        let alerting = service()
        alerting.alertmanagerEvaluated([], evaluator, catalog, leader: true, isSilenced: { $0.rule == "high" })
        #expect(alerting.alertmanager.isEmpty, "a silenced alert is not sent")
        alerting.alertmanagerEvaluated([], evaluator, catalog, leader: true)
        #expect(alerting.alertmanager.due(now: 10)["am"]?.map(\.labels) == [["svc": "api"]])
        alerting.alertmanagerEvaluated([], evaluator, catalog, leader: false)
        #expect(alerting.alertmanager.isEmpty, "a follower sends nothing")
    }
}

/// The JSON types receivers read: integers stay integers, an explicit null stays null, and the
/// counts of what a payload leaves out are there.
@Suite struct PayloadShapeTests {
    @Test func chatPayloadsKeepTheirTypes() throws {
        let slack = SlackMessage.payload(event())
        #expect(slack["attachments"]?.array?.first?["ts"] == .number(1_800_000_000))
        #expect(slack.text.contains(#""ts":1800000000}"#))
        let teams = TeamsMessage.payload(event())
        #expect(teams["attachments"]?.array?.first?["contentUrl"] == .null)
        #expect(teams.text.contains(#""contentUrl":null"#))
        #expect(DiscordMessage.payload(event()).text.contains(#""color":14687834,"#))
    }

    @Test func webhookAndPagerDutyCountWhatTheyLeaveOut() {
        let alerts = (0..<(WebhookMessage.maxAlerts + 3)).map { event(labels: ["n": "\($0)"]) }
        let notification = AlertNotification(groupKey: "{}", groupLabels: [:], alerts: alerts, isRepeat: false)
        let webhook = WebhookMessage.payload(notification, receiver: "hook", key: "k")
        #expect(webhook["truncatedAlerts"] == .int(3))
        #expect(webhook["alerts"]?.array?.count == WebhookMessage.maxAlerts)
        #expect(webhook["repeat"] == .bool(false))
        let pagerDuty = PagerDutyMessage.payload(notification, channel: "oncall", routingKey: "KEY")
        #expect(pagerDuty["payload"]?["custom_details"]?["omitted"] == .int(alerts.count - PagerDutyMessage.maxListedAlerts))
    }
}
