import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// A row of `telltale_silences`: while it is in force, alerts whose labels (with `alertname`,
/// `severity` and `environment`) match every matcher keep their state but send nothing.
struct Silence: Sendable {
    let id: Int64
    let matchers: [LabelMatcher]
    let startsAt: Double
    let endsAt: Double

    func mutes(_ labels: Labels, at time: Double) -> Bool {
        guard startsAt <= time, time < endsAt else { return false }
        // A matcher over its regex budget cannot tell: the alert is not silenced, so that a
        // costly pattern never hides an alert.
        return matchers.allSatisfy { (try? $0.matches(labels)) ?? false }
    }
}

/// One weekly window of a `telltale_mute_times` name: some weekdays, a time of day range,
/// read in a time zone.
struct MuteWindow: Sendable {
    /// Weekdays as `Calendar` numbers them (1 Sunday … 7 Saturday); empty means every day.
    let weekdays: Set<Int>
    /// Minutes after midnight: `start` inclusive, `end` exclusive (1440 is midnight at the end).
    let start: Int
    let end: Int
    /// Gregorian, in the window's time zone: made once when the row is read, as a check
    /// runs for every alert transition and a calendar costs a time zone look-up to make.
    let calendar: Calendar

    init(weekdays: Set<Int>, start: Int, end: Int, timeZone: TimeZone) {
        (self.weekdays, self.start, self.end) = (weekdays, start, end)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        self.calendar = calendar
    }

    func contains(_ time: Double) -> Bool {
        let parts = calendar.dateComponents([.weekday, .hour, .minute], from: Date(timeIntervalSince1970: time))
        guard let weekday = parts.weekday, let hour = parts.hour, let minute = parts.minute else { return false }
        let minuteOfDay = hour * 60 + minute
        return (weekdays.isEmpty || weekdays.contains(weekday)) && start <= minuteOfDay && minuteOfDay < end
    }

    static let weekdayNames = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]

    /// Parses a row's columns; the error names the column.
    static func parse(weekdays: String, start: String, end: String, timeZone: String) -> Result<MuteWindow, RuleError> {
        // The column's default, UTC, as GMT: any other name loads ICU's zone tables (`LocalTimeZone`).
        guard let zone = LocalTimeZone.zone(named: timeZone.trimming(" ")) else {
            return .failure(RuleError("time_zone \"\(timeZone.clipped(60))\" is not a known IANA time zone"))
        }
        guard let startMinute = minuteOfDay(start), let endMinute = minuteOfDay(end), startMinute < endMinute else {
            return .failure(RuleError("start_time and end_time must be HH:MM with start before end (end at most 24:00)"))
        }
        switch parseWeekdays(weekdays) {
        case .success(let days): return .success(MuteWindow(weekdays: days, start: startMinute, end: endMinute, timeZone: zone))
        case .failure(let error): return .failure(error)
        }
    }

    /// `saturday,sunday`, `monday:friday` (a range), or empty for every day.
    private static func parseWeekdays(_ text: String) -> Result<Set<Int>, RuleError> {
        var days: Set<Int> = []
        for item in text.lowercased().split(separator: ",").map({ $0.trimming(" ") }) where !item.isEmpty {
            let bounds = item.split(separator: ":", omittingEmptySubsequences: false).map { weekdayNames.firstIndex(of: $0.trimming(" ")) }
            guard bounds.count <= 2, let first = bounds.first ?? nil, let last = bounds.last ?? nil else {
                return .failure(RuleError("weekdays: \"\(item.clipped(40))\" is not a weekday or a range such as monday:friday"))
            }
            // A range may wrap around the end of the week: saturday:sunday.
            let range = first <= last ? Array(first...last) : Array(first...6) + Array(0...last)
            days.formUnion(range.map { $0 + 1 })
        }
        return .success(days)
    }

    private static func minuteOfDay(_ text: String) -> Int? {
        let parts = text.trimming(" ").split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count == 2 }), let hour = Int(parts[0]), let minute = Int(parts[1]),
              (0...59).contains(minute), (0...24).contains(hour), hour < 24 || minute == 0 else { return nil }
        return hour * 60 + minute
    }
}

/// What keeps an alert quiet: the silences in force and the named mute times.
struct Muting: Sendable {
    var silences: [Silence] = []
    var muteTimes: [String: [MuteWindow]] = [:]

    /// Whether an alert sends nothing at `time`: a silence matches it, or a mute time named by
    /// its rule or its channel is in one of its windows.
    func mutes(_ labels: Labels, muteTimes names: [String], at time: Double) -> Bool {
        silences.contains { $0.mutes(labels, at: time) }
            || names.contains { name in muteTimes[name]?.contains { $0.contains(time) } ?? false }
    }

    /// The most silences and mute-time rows read; more are reported, not loaded.
    static let maxRows = 10_000
}

extension RuleCatalog {
    /// Whether an alert of `rule` with the series' `labels` sends nothing at `time`: a silence
    /// matches it (with `alertname`, `severity` and `environment`), or a mute time named by the
    /// rule or its channel is in force.
    func mutes(_ rule: AlertRule, _ labels: [String: String], at time: Double) -> Bool {
        let routing = AlertEvent.routingLabels(labels, rule: rule.name, severity: rule.severity, environment: rule.environment)
        let names = [rule.muteTime, rule.channel.flatMap { channels[$0]?.grouping.muteTime }].compactMap { $0 }
        return muting.mutes(Labels(routing.map { ($0.key, $0.value) }), muteTimes: names, at: time)
    }
}

extension RuleLoader {
    static let silencesSQL = """
        SELECT id, matchers, extract(epoch FROM starts_at), extract(epoch FROM ends_at) FROM telltale_silences \
        WHERE ends_at > now() ORDER BY id LIMIT \(Muting.maxRows + 1)
        """
    static let muteTimesSQL = """
        SELECT name, weekdays, start_time, end_time, time_zone FROM telltale_mute_times ORDER BY id LIMIT \(Muting.maxRows + 1)
        """

    /// Reads silences and mute times; an invalid row is reported under `silence:<id>` or
    /// `mute_time:<name>` and skipped (a mute time with an invalid window is not in force).
    func loadMuting(_ client: PostgresClient, into catalog: inout RuleCatalog) async throws(PostgresError) {
        var muting = Muting()
        let silences = try await client.query(Self.silencesSQL, timeouts: settings.timeouts).rows
        for row in silences.prefix(Muting.maxRows) {
            guard case .int(let id) = row[0], let starts = row[2].number, let ends = row[3].number else { continue }
            switch LabelMatcher.parseList(row[1].text) {
            case .success(let matchers) where !matchers.isEmpty:
                muting.silences.append(Silence(id: id, matchers: matchers, startsAt: starts, endsAt: ends))
            case .success:
                catalog.ruleErrors["silence:\(id)"] = "a silence needs at least one matcher"
            case .failure(let error):
                catalog.ruleErrors["silence:\(id)"] = "matchers: \(error)"
            }
        }
        var invalid: Set<String> = []
        for row in try await client.query(Self.muteTimesSQL, timeouts: settings.timeouts).rows.prefix(Muting.maxRows) {
            let name = row[0].text.clipped(AlertRule.maxNameLength)
            switch MuteWindow.parse(weekdays: row[1].text, start: row[2].text, end: row[3].text, timeZone: row[4].text) {
            case .success(let window): muting.muteTimes[name, default: []].append(window)
            case .failure(let error):
                invalid.insert(name)
                catalog.ruleErrors["mute_time:\(name)"] = error.description
            }
        }
        for name in invalid { muting.muteTimes[name] = nil }
        if silences.count > Muting.maxRows {
            catalog.ruleErrors["silences"] = "more than \(Muting.maxRows) silences in force: the first \(Muting.maxRows) apply"
        }
        catalog.muting = muting
    }
}
