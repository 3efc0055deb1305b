import Foundation
import TelltaleMetrics
import Testing
@testable import TelltaleAlerting
@testable import TelltaleClients

/// The group planner on a fake clock: what a channel's group sends, and when.
@Suite struct GroupPlannerTests {
    static func event(_ series: String, _ status: AlertEvent.Status = .firing, at time: Double = 0, rule: String = "queue_failed")
        -> AlertEvent
    {
        AlertEvent(rule: rule, environment: "prod", severity: "critical", status: status, metric: "m", comparison: ">",
                   threshold: 0, value: 1, labels: ["queue": series], description: nil, startsAt: status == .firing ? time : 0,
                   endsAt: status == .resolved ? time : nil, link: nil)
    }

    static func catalog(_ grouping: GroupSettings = GroupSettings(), muting: Muting = Muting(), ruleMute: String? = nil) -> RuleCatalog {
        var catalog = RuleCatalog()
        catalog.channels["chat"] = Channel(name: "chat", kind: .slack, url: "https://example.test/hook", enabled: true, grouping: grouping)
        for name in ["queue_failed", "other"] {
            catalog.rules[name] = AlertRule(name: name, environment: "prod", metric: "m", matchers: [], comparison: .greater,
                                            threshold: 0, clearThreshold: nil, forDuration: .zero, keepFiring: .zero,
                                            severity: "critical", channel: "chat", description: nil, muteTime: ruleMute)
        }
        catalog.muting = muting
        return catalog
    }

    /// Transitions as the outbox holds them, numbered from 1.
    static func waiting(_ events: [AlertEvent], grouping: GroupSettings = GroupSettings()) -> [WaitingTransition] {
        events.enumerated().map { WaitingTransition(id: Int64($0.offset + 1), channel: "chat", groupKey: grouping.groupKey($0.element), event: $0.element) }
    }

    static let groupKey = #"{alertname="queue_failed"}"#
    static func sent(at time: Double) -> [GroupPlanner.GroupID: PGValue] {
        [GroupPlanner.GroupID(channel: "chat", key: groupKey): .timestamp(seconds: time, text: "t\(time)")]
    }

    @Test func tenSeriesFiringTogetherAreOneMessage() {
        let events = (0..<10).map { Self.event("q\($0)", at: 100) }
        let (flushes, _) = GroupPlanner(catalog: Self.catalog(), now: 100).plan(waiting: Self.waiting(events), lastSent: [:], firing: events)
        #expect(flushes.count == 1)
        #expect(flushes[0].notification?.alerts.count == 10)
        #expect(flushes[0].carried == Array(1...10))
        #expect(flushes[0].notification?.title == "[FIRING:10] queue_failed")
    }

    /// Groups are told apart by bytes, as their rows and PagerDuty's incidents are: values that
    /// differ only in Unicode normalisation make two groups and two messages.
    @Test func normalisationVariantsAreTwoGroups() {
        let grouping = GroupSettings(groupBy: ["queue"])
        let events = [Self.event("caf\u{E9}", at: 100), Self.event("cafe\u{301}", at: 100)]
        let (flushes, _) = GroupPlanner(catalog: Self.catalog(grouping), now: 100)
            .plan(waiting: Self.waiting(events, grouping: grouping), lastSent: [:], firing: events)
        #expect(flushes.count == 2)
        #expect(Set(flushes.compactMap { $0.notification.map { ExactString($0.groupKey) } }).count == 2)
    }

    @Test func groupWaitHoldsTheFirstMessage() {
        let grouping = GroupSettings(wait: 30, interval: 300)
        let events = [Self.event("q1", at: 100)]
        let planner = { (now: Double) in
            GroupPlanner(catalog: Self.catalog(grouping), now: now).plan(waiting: Self.waiting(events, grouping: grouping), lastSent: [:], firing: events)
        }
        let (early, due) = planner(110)
        #expect(early.isEmpty)
        #expect(due == 130)
        #expect(planner(130).0.count == 1)
    }

    @Test func oneMoreInsideTheIntervalWaitsForItThenListsTheGroup() {
        let grouping = GroupSettings(wait: 0, interval: 60)
        let firing = (0..<11).map { Self.event("q\($0)", at: $0 < 10 ? 100 : 120) }
        let newOne = Self.waiting([firing[10]], grouping: grouping)
        let planner = GroupPlanner(catalog: Self.catalog(grouping), now: 130)
        let (early, due) = planner.plan(waiting: newOne, lastSent: Self.sent(at: 100), firing: firing)
        #expect(early.isEmpty)
        #expect(due == 160)
        let (update, _) = GroupPlanner(catalog: Self.catalog(grouping), now: 160).plan(waiting: newOne, lastSent: Self.sent(at: 100), firing: firing)
        #expect(update.count == 1)
        #expect(update[0].notification?.firing.count == 11)
    }

    @Test func remindsAfterTheRepeatInterval() {
        let grouping = GroupSettings(repeatInterval: 3600)
        let firing = [Self.event("q1", at: 100)]
        let (none, due) = GroupPlanner(catalog: Self.catalog(grouping), now: 200).plan(waiting: [], lastSent: Self.sent(at: 100), firing: firing)
        #expect(none.isEmpty)
        #expect(due == 3700)
        let (reminder, _) = GroupPlanner(catalog: Self.catalog(grouping), now: 3700).plan(waiting: [], lastSent: Self.sent(at: 100), firing: firing)
        #expect(reminder.count == 1)
        #expect(reminder[0].notification?.isRepeat == true)
        #expect(reminder[0].repeatAfter == .timestamp(seconds: 100, text: "t100.0"))
        #expect(reminder[0].notification?.title == "[FIRING:1] queue_failed (reminder)")
    }

    @Test func resolvedAlertsAreReportedInTheGroup() {
        let events = [Self.event("q1", .resolved, at: 200)]
        let stillFiring = [Self.event("q2", at: 100)]
        let (flushes, _) = GroupPlanner(catalog: Self.catalog(), now: 200).plan(waiting: Self.waiting(events), lastSent: Self.sent(at: 100), firing: stillFiring)
        #expect(flushes[0].notification?.resolved.map(\.labels) == [["queue": "q1"]])
        #expect(flushes[0].notification?.firing.map(\.labels) == [["queue": "q2"]])
        #expect(flushes[0].notification?.title == "[FIRING:1, RESOLVED:1] queue_failed")
    }

    @Test func silencedTransitionsWaitAndAreSentWhenTheSilenceEnds() throws {
        let silence = Silence(id: 1, matchers: try LabelMatcher.parseList(#"queue="q1""#).get(), startsAt: 0, endsAt: 500)
        let catalog = Self.catalog(muting: Muting(silences: [silence]))
        let events = [Self.event("q1", at: 100)]
        let (held, due) = GroupPlanner(catalog: catalog, now: 100).plan(waiting: Self.waiting(events), lastSent: [:], firing: events)
        #expect(held.isEmpty)
        #expect(due == 120)  // the next minute: a mute time might end sooner than the silence
        let (after, _) = GroupPlanner(catalog: catalog, now: 500).plan(waiting: Self.waiting(events), lastSent: [:], firing: events)
        #expect(after.count == 1)
        #expect(after[0].notification?.firing.count == 1)
    }

    @Test func firedAndResolvedWhileSilencedSendsNothing() throws {
        let silence = Silence(id: 1, matchers: try LabelMatcher.parseList(#"alertname="queue_failed""#).get(), startsAt: 0, endsAt: 500)
        let events = [Self.event("q1", at: 100), Self.event("q1", .resolved, at: 200)]
        let (flushes, _) = GroupPlanner(catalog: Self.catalog(muting: Muting(silences: [silence])), now: 600)
            .plan(waiting: Self.waiting(events), lastSent: [:], firing: [])
        #expect(flushes.count == 1)
        #expect(flushes[0].notification == nil)
        #expect(flushes[0].dropped.sorted() == [1, 2])
    }

    /// Regression: with A silenced and B resolving, the group's message said "resolved" and
    /// PagerDuty closed the incident while A still fired.
    @Test func aGroupWithSilencedFiringAlertsIsNotResolved() throws {
        let silence = Silence(id: 1, matchers: try LabelMatcher.parseList(#"queue="a""#).get(), startsAt: 0, endsAt: 1000)
        let firing = [Self.event("a", at: 100)]
        let (flushes, _) = GroupPlanner(catalog: Self.catalog(muting: Muting(silences: [silence])), now: 200)
            .plan(waiting: Self.waiting([Self.event("b", .resolved, at: 200)]), lastSent: Self.sent(at: 100), firing: firing)
        #expect(flushes[0].notification?.resolved.count == 1)
        #expect(flushes[0].notification?.status == .firing)
    }

    /// Regression: a flapping series that never reached a message still sent the group's
    /// firing alerts again at every interval.
    @Test func nothingNewIsNoMessage() {
        let events = [Self.event("q1", at: 100), Self.event("q1", .resolved, at: 110)]
        let (flushes, _) = GroupPlanner(catalog: Self.catalog(), now: 120)
            .plan(waiting: Self.waiting(events), lastSent: Self.sent(at: 50), firing: [Self.event("q2", at: 50)])
        #expect(flushes.count == 1 && flushes[0].notification == nil)
        #expect(flushes[0].dropped.sorted() == [1, 2])
    }

    /// Regression: a silenced flapping alert piled up waiting transitions until they filled
    /// the page every pass reads, and no other group was sent.
    @Test func aHeldSeriesKeepsOnlyItsFirstAndLastChange() throws {
        let silence = Silence(id: 1, matchers: try LabelMatcher.parseList(#"queue="q1""#).get(), startsAt: 0, endsAt: 1000)
        let flaps = (0..<6).map { Self.event("q1", $0 % 2 == 0 ? .firing : .resolved, at: Double(100 + $0)) }
        let (flushes, _) = GroupPlanner(catalog: Self.catalog(muting: Muting(silences: [silence])), now: 200)
            .plan(waiting: Self.waiting(flaps), lastSent: [:], firing: [])
        #expect(flushes.count == 1 && flushes[0].notification == nil)
        #expect(flushes[0].dropped.sorted() == [2, 3, 4, 5])
    }

    @Test func muteTimeWindowsInTheirTimeZone() throws {
        let window = try MuteWindow.parse(weekdays: "saturday:sunday", start: "22:00", end: "24:00", timeZone: "Europe/Berlin").get()
        // Saturday 2026-11-28 21:30 UTC is 22:30 in Berlin (CET, UTC+1).
        let saturdayNight = Date(timeIntervalSince1970: 1_795_901_400).timeIntervalSince1970
        #expect(window.contains(saturdayNight))
        #expect(!window.contains(saturdayNight - 3600))
        #expect(window.contains(saturdayNight - 6 * 86400))  // the Sunday before, 22:30
        #expect(!window.contains(saturdayNight - 5 * 86400))  // the Monday after that, 22:30
        let catalog = Self.catalog(muting: Muting(muteTimes: ["weekend": [window]]), ruleMute: "weekend")
        let events = [Self.event("q1", at: saturdayNight)]
        let (held, _) = GroupPlanner(catalog: catalog, now: saturdayNight).plan(waiting: Self.waiting(events), lastSent: [:], firing: events)
        #expect(held.isEmpty)
    }

    /// UTC's names are read as GMT (no ICU zone behind it), with the same windows.
    @Test func muteTimeWindowsInUTC() throws {
        let saturdayNight = 1_795_901_400.0  // Saturday 2026-11-28 21:30 UTC
        for name in ["UTC", " Etc/UTC ", "GMT", "Zulu"] {
            let window = try MuteWindow.parse(weekdays: "saturday", start: "21:00", end: "22:00", timeZone: name).get()
            #expect(window.calendar.timeZone.identifier == "GMT", "\(name)")
            #expect(window.contains(saturdayNight), "\(name)")
            #expect(!window.contains(saturdayNight + 3600), "\(name)")
        }
    }

    @Test func rejectsInvalidSettings() {
        #expect(throws: RuleError.self) { try MuteWindow.parse(weekdays: "funday", start: "00:00", end: "24:00", timeZone: "UTC").get() }
        #expect(throws: RuleError.self) { try MuteWindow.parse(weekdays: "", start: "10:00", end: "09:00", timeZone: "UTC").get() }
        #expect(throws: RuleError.self) { try MuteWindow.parse(weekdays: "", start: "00:00", end: "24:00", timeZone: "Mars/Olympus").get() }
        #expect(throws: RuleError.self) { try GroupSettings.parse(groupBy: "a b", wait: 0, interval: 0, repeatInterval: 0, muteTime: nil).get() }
        #expect(throws: RuleError.self) { try GroupSettings.parse(groupBy: nil, wait: -1, interval: 0, repeatInterval: 0, muteTime: nil).get() }
        #expect(throws: RuleError.self) { try GroupSettings.parse(groupBy: nil, wait: .infinity, interval: 0, repeatInterval: 0, muteTime: nil).get() }
    }

    @Test func longGroupsEndWithASummaryLine() {
        let events = (0..<500).map { Self.event("queue-number-\($0)", at: 100) }
        let notification = AlertNotification(groupKey: Self.groupKey, groupLabels: ["alertname": "queue_failed"], alerts: events, isRepeat: false)
        let text = notification.lines(limit: 3000)
        #expect(text.count <= 3000)
        #expect(text.hasSuffix("more"))
    }

    @Test func storedSingleEventsStillDecode() {
        let event = Self.event("q1", at: 100)
        #expect(AlertNotification.decode(event.json()) == AlertNotification(single: event))
        let group = AlertNotification(groupKey: "k", groupLabels: [:], alerts: [event], isRepeat: true)
        #expect(AlertNotification.decode(group.json()) == group)
    }
}
