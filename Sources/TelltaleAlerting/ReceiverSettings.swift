import Foundation
import TelltaleClients
import TelltaleCore
import TelltaleMetrics

/// The non-secret columns of `telltale_channels` added for PagerDuty, email and private CAs
/// (migration v4). The secret stays in `url_env`/`url_file`; these name no secret.
struct ReceiverSettings: Sendable, Equatable {
    /// PagerDuty: the Events API v2 URL, when not the default (the EU region, a test fake).
    var endpoint: String?
    /// Email: sender, recipients and how TLS is used.
    var email: EmailSettings?
    /// A PEM bundle of CA certificates that verifies the receiver's TLS certificate (a
    /// private CA), resolved below `alerting.channel_file_dir`.
    var caFile: String?

    /// The columns as read; validated by `Channel.validated`.
    struct Row: Sendable {
        var endpoint: String?
        var emailFrom: String?
        var emailTo: String?
        var smtpTLS: String?
        var caFile: String?
    }
}

struct EmailSettings: Sendable, Equatable {
    /// How an `smtp://` URL is secured; `smtps://` is TLS from the first byte whatever this says.
    enum Security: String, Sendable {
        /// STARTTLS, required: a server that does not offer it gets nothing (the default).
        case starttls
        /// Plain SMTP, for a relay on the same host or network only.
        case none
    }

    var from: String
    var to: [String]
    var security: Security

    /// Recipients of one channel: a message is one submission, and a typo should not go far.
    static let maxRecipients = 50
}

extension Channel {
    /// A channel from a row, or why the row is not usable. Reasons never quote the secret.
    /// Resolves `ca_file` on the file system: call where channel files are read.
    static func validated(name: String, kind: Kind, secret: String, enabled: Bool, row: ReceiverSettings.Row,
                          secrets: ChannelSecrets) -> Result<Channel, FileProblem> {
        var settings = ReceiverSettings()
        if let caFile = row.caFile {
            switch secrets.file(caFile, column: "ca_file") {
            case .success(let resolved): settings.caFile = resolved
            case .failure(let problem): return .failure(problem)
            }
        }
        if let problem = Self.misplacedColumn(kind, row) { return .failure(FileProblem(problem)) }
        switch kind {
        case .pagerduty:
            guard PagerDutyMessage.isRoutingKey(secret) else {
                return .failure(FileProblem("its routing key must be 1 to 128 printable characters without spaces"))
            }
            if let endpoint = row.endpoint {
                guard Self.isHTTPURL(endpoint) else { return .failure(FileProblem("endpoint must be an http:// or https:// URL")) }
                settings.endpoint = endpoint
            }
        case .email:
            switch EmailSettings.validated(row, smtpURL: secret) {
            case .success(let email): settings.email = email
            case .failure(let problem): return .failure(problem)
            }
        case .alertmanager:
            let urls = AlertmanagerMessage.urls(secret)
            guard (1...AlertmanagerMessage.maxURLs).contains(urls.count), urls.allSatisfy(Self.isHTTPURL) else {
                return .failure(FileProblem(
                    "its value must be 1 to \(AlertmanagerMessage.maxURLs) http:// or https:// URLs separated by commas or spaces"))
            }
        case .slack, .discord, .teams, .webhook:
            break
        }
        return .success(Channel(name: name, kind: kind, url: secret, enabled: enabled, settings: settings))
    }

    /// A column set on a kind it does not apply to is a mistake worth reporting.
    private static func misplacedColumn(_ kind: Kind, _ row: ReceiverSettings.Row) -> String? {
        if row.endpoint != nil && kind != .pagerduty { return "endpoint applies to pagerduty channels only" }
        if (row.emailFrom ?? row.emailTo ?? row.smtpTLS) != nil && kind != .email {
            return "email_from, email_to and smtp_tls apply to email channels only"
        }
        return nil
    }

    static func isHTTPURL(_ text: String) -> Bool {
        let lower = text.lowercased()
        return (lower.hasPrefix("http://") || lower.hasPrefix("https://")) && text.count <= 2048
            && !text.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == " " }
    }

    /// Every form of the secret that an error might quote: the whole value, each URL of a
    /// list, and each URL's password on its own (libcurl may report any of them).
    var redactor: Redactor {
        let parts = AlertmanagerMessage.urls(url)
        return Redactor([url] + parts + parts.compactMap(Self.password))
    }

    /// The password of `scheme://user:password@host`, percent-decoded.
    static func password(_ url: String) -> String? {
        guard let start = url.range(of: "://")?.upperBound else { return nil }
        let authority = url[start...].prefix { !"/?#".contains($0) }
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return nil }
        let password = String(authority[authority.index(after: colon)..<at])
        return password.removingPercentEncoding ?? password
    }
}

extension EmailSettings {
    static func validated(_ row: ReceiverSettings.Row, smtpURL: String) -> Result<EmailSettings, FileProblem> {
        let lower = smtpURL.lowercased()
        let implicitTLS = lower.hasPrefix("smtps://")
        let authority = smtpURL.drop { $0 != "/" }.dropFirst(2).prefix { !"/?#".contains($0) }
        let host = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
        guard implicitTLS || lower.hasPrefix("smtp://"), !host.isEmpty else {
            return .failure(FileProblem("its value must be an smtp:// or smtps:// URL, such as smtps://user:password@host:465"))
        }
        guard let from = row.emailFrom, EmailAddress.isValid(from) else {
            return .failure(FileProblem("email_from must be one email address, such as alerts@example.com"))
        }
        let to = (row.emailTo ?? "").split(separator: ",").map { $0.trimming(" \t") }.filter { !$0.isEmpty }
        guard (1...maxRecipients).contains(to.count), to.allSatisfy(EmailAddress.isValid) else {
            return .failure(FileProblem("email_to must be 1 to \(maxRecipients) email addresses separated by commas"))
        }
        guard let security = Security(rawValue: (row.smtpTLS ?? "starttls").lowercased()) else {
            return .failure(FileProblem("smtp_tls must be starttls (the default) or none"))
        }
        if implicitTLS && security == .none {
            return .failure(FileProblem("smtp_tls none contradicts an smtps:// URL (TLS from the first byte)"))
        }
        return .success(EmailSettings(from: from, to: to, security: security))
    }
}

/// Bare email addresses (`local@domain`), the only form accepted in `email_from` and
/// `email_to`: what goes into headers and the SMTP envelope can carry no line break, no
/// display name and no second address.
enum EmailAddress {
    static let maxLength = 254

    static func isValid(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard text.utf8.count <= maxLength, parts.count == 2 else { return false }
        let (local, domain) = (parts[0], parts[1])
        let localCharacters = "!#$%&'*+-/=?^_`{|}~."
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        return !local.isEmpty && local.count <= 64 && !local.hasPrefix(".") && !local.hasSuffix(".") && !local.contains("..")
            && local.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || localCharacters.contains($0)) }
            && labels.count >= 2 && labels.allSatisfy { label in
                !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            }
    }
}
