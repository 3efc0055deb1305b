import CPCRE2
import TelltaleMetrics

/// A regular expression whose every match has a hard cost budget.
///
/// Patterns come from table rows an admin portal edits and from the configuration. Swift's
/// `Regex` backtracks without limit: `(a+)+$` against a label value of a hundred `a`s and a
/// `b` ran for hours and froze alerting. PCRE2 (Debian's libpcre2) counts its backtracking
/// and gives up at `matchLimit` steps or `depthLimit` nested backtracks; a pattern that hits
/// the budget is reported as that pattern's error instead of burning a thread.
///
/// The compiled code is immutable after `init` and PCRE2 documents it as safe to share
/// between threads; each match gets its own match data. That is what makes the unchecked
/// `Sendable` sound.
package final class BoundedRegex: @unchecked Sendable {
    package enum Anchoring: Sendable {
        /// The pattern must match the whole subject (PromQL's label matchers).
        case whole
        /// The pattern may match anywhere in the subject.
        case anywhere
    }

    package struct BudgetExceeded: Error, Sendable, CustomStringConvertible {
        package let pattern: String

        package init(pattern: String) {
            self.pattern = pattern
        }

        package var description: String { "regular expression \"\(pattern.clipped(80))\" exceeded its match budget" }
    }

    /// Backtracking steps one match may take: a few milliseconds at most. A rule's matching
    /// also has a time budget per evaluation (`MatchingBudget`), since a pattern can
    /// cost milliseconds per value without reaching this limit.
    package static let matchLimit: UInt32 = 100_000
    package static let depthLimit: UInt32 = 2_000
    package static let maxPatternLength = 4096
    /// Subjects are cut to this many bytes: a label value has no business being longer.
    package static let maxSubjectLength = 64 << 10

    package let pattern: String
    private let code: OpaquePointer
    private let matchContext: OpaquePointer

    /// Compiles `pattern`; the error says why it is not valid, with its position.
    package init(_ pattern: String, anchoring: Anchoring) throws(RegexError) {
        guard pattern.utf8.count <= Self.maxPatternLength else {
            throw RegexError("regular expression longer than \(Self.maxPatternLength) bytes")
        }
        var options = UInt32(PCRE2_UTF)
        if anchoring == .whole { options |= UInt32(PCRE2_ANCHORED) | UInt32(PCRE2_ENDANCHORED) }
        var errorCode: Int32 = 0
        var errorOffset = 0
        let compiled = pattern.withCString { text in
            text.withMemoryRebound(to: UInt8.self, capacity: pattern.utf8.count) { bytes in
                pcre2_compile_8(bytes, pattern.utf8.count, options, &errorCode, &errorOffset, nil)
            }
        }
        guard let compiled else {
            throw RegexError("invalid regular expression at offset \(errorOffset): \(Self.message(errorCode))")
        }
        guard let context = pcre2_match_context_create_8(nil) else {
            pcre2_code_free_8(compiled)
            throw RegexError("PCRE2 could not allocate a match context")
        }
        pcre2_set_match_limit_8(context, Self.matchLimit)
        pcre2_set_depth_limit_8(context, Self.depthLimit)
        self.pattern = pattern
        code = compiled
        matchContext = context
    }

    deinit {
        pcre2_match_context_free_8(matchContext)
        pcre2_code_free_8(code)
    }

    /// Whether the pattern matches `subject`; throws when the match ran out of budget.
    package func matches(_ subject: String) throws(BudgetExceeded) -> Bool {
        guard let data = pcre2_match_data_create_8(1, nil) else { throw BudgetExceeded(pattern: pattern) }
        defer { pcre2_match_data_free_8(data) }
        var subject = subject
        let result = subject.withUTF8 { bytes -> Int32 in
            var length = min(bytes.count, Self.maxSubjectLength)
            // Cut at a character boundary: half a UTF-8 sequence is an error to PCRE2.
            while length < bytes.count, length > 0, bytes[length] & 0xC0 == 0x80 { length -= 1 }
            if let base = bytes.baseAddress { return pcre2_match_8(code, base, length, 0, 0, data, matchContext) }
            var nothing: UInt8 = 0
            return pcre2_match_8(code, &nothing, 0, 0, 0, data, matchContext)
        }
        if result >= 0 { return true }
        if result == PCRE2_ERROR_NOMATCH || result == PCRE2_ERROR_PARTIAL { return false }
        // The budget is exhausted (or PCRE2 failed otherwise): no answer.
        throw BudgetExceeded(pattern: pattern)
    }

    private static func message(_ code: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        let length = pcre2_get_error_message_8(code, &buffer, buffer.count)
        return length > 0 ? String(decoding: buffer.prefix(Int(length)), as: UTF8.self) : "error \(code)"
    }
}

/// Why a pattern is not a usable regular expression.
package struct RegexError: Error, Sendable, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
