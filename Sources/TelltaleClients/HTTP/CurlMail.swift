import CCurl
import TelltaleCore
import TelltaleMetrics

/// One email for one SMTP submission: the envelope and the whole message, composed by the caller.
public struct OutboundMail: Sendable {
    /// `smtp://` or `smtps://`, with credentials: a secret, never logged.
    public var url: String
    /// The envelope sender and recipients (bare addresses, validated by the caller).
    public var from: String
    public var recipients: [String]
    /// Headers and body, with CRLF line endings.
    public var message: [UInt8]
    /// On `smtp://`, whether STARTTLS is required (the default) or not attempted (a local
    /// relay). `smtps://` is TLS from the first byte either way.
    public var requiresTLS = true
    public var caFile: String?
    public var connectTimeout = Duration.seconds(5)
    public var totalTimeout = Duration.seconds(10)

    public init(url: String, from: String, recipients: [String], message: [UInt8]) {
        self.url = url
        self.from = from
        self.recipients = recipients
        self.message = message
    }
}

/// A submission the server did not accept, or that failed on the way.
public struct OutboundMailError: Error, Sendable, CustomStringConvertible {
    /// The server's last reply code (e.g. 450, 550), 0 when the failure was not a reply
    /// (connection, TLS, timeout).
    public let replyCode: Int
    public let message: String
    public var description: String { message }
}

/// Owns one curl easy handle and its recipient list for one SMTP submission; both freed
/// exactly once, in `deinit`. Used by one thread at a time, like `CurlTransfer`.
package final class CurlMail {
    private let handle: UnsafeMutableRawPointer
    private var recipientList: UnsafeMutablePointer<curl_slist>?

    package init() throws(OutboundMailError) {
        _ = CurlTransfer.globalInit
        guard let handle = curl_easy_init() else {
            throw OutboundMailError(replyCode: 0, message: "libcurl could not create a handle")
        }
        self.handle = handle
    }

    deinit {
        curl_slist_free_all(recipientList)
        curl_easy_cleanup(handle)
    }

    /// Submits the message; returns the server's final reply code (250).
    package func send(_ mail: OutboundMail) throws(OutboundMailError) -> Int {
        let source = MailSource(mail.message)
        let context = Unmanaged.passUnretained(source).toOpaque()
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        for recipient in mail.recipients { recipientList = curl_slist_append(recipientList, "<\(recipient)>") }
        // The read callback reaches `source` through an unretained pointer: it must outlive the transfer.
        let code: CURLcode = withExtendedLifetime(source) { mail.url.withCString { url in
            "<\(mail.from)>".withCString { from in
                "smtp,smtps".withCString { protocols in
                    (mail.caFile ?? "").withCString { caFile in
                        errorBuffer.withUnsafeMutableBufferPointer { errors in
                            setLong(CURLOPT_NOSIGNAL, 1)  // signals are not safe in threads
                            setPointer(CURLOPT_URL, url)
                            setPointer(CURLOPT_PROTOCOLS_STR, protocols)
                            let tls = mail.requiresTLS ? CURLUSESSL_ALL : CURLUSESSL_NONE
                            setLong(CURLOPT_USE_SSL, Int(tls.rawValue))
                            setLong(CURLOPT_SSL_VERIFYPEER, 1)
                            setLong(CURLOPT_SSL_VERIFYHOST, 2)
                            if mail.caFile != nil { setPointer(CURLOPT_CAINFO, caFile) }
                            setLong(CURLOPT_CONNECTTIMEOUT_MS, Int(mail.connectTimeout.milliseconds))
                            setLong(CURLOPT_TIMEOUT_MS, Int(mail.totalTimeout.milliseconds))
                            setPointer(CURLOPT_ERRORBUFFER, errors.baseAddress)
                            setPointer(CURLOPT_MAIL_FROM, from)
                            setPointer(CURLOPT_MAIL_RCPT, recipientList)
                            setLong(CURLOPT_UPLOAD, 1)
                            _ = telltale_curl_setopt_offset(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(mail.message.count))
                            _ = telltale_curl_setopt_callback(handle, CURLOPT_READFUNCTION, MailSource.read)
                            setPointer(CURLOPT_READDATA, context)
                            // Nothing is expected back; without this libcurl would write to stdout.
                            _ = telltale_curl_setopt_callback(handle, CURLOPT_WRITEFUNCTION, MailSource.discard)
                            return curl_easy_perform(handle)
                        }
                    }
                }
            }
        } }
        var reply = 0
        _ = telltale_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &reply)
        guard code == CURLE_OK else {
            let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw OutboundMailError(replyCode: reply, message: detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
        }
        return reply
    }

    private func setLong(_ option: CURLoption, _ value: Int) {
        _ = telltale_curl_setopt_long(handle, option, value)
    }

    private func setPointer(_ option: CURLoption, _ value: UnsafeRawPointer?) {
        _ = telltale_curl_setopt_pointer(handle, option, value)
    }
}

/// Hands the message to libcurl's read callback, which reaches it through an opaque pointer.
private final class MailSource {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    static let read: telltale_curl_data_callback = { buffer, size, count, context in
        guard let buffer, let context else { return 0 }
        let source = Unmanaged<MailSource>.fromOpaque(context).takeUnretainedValue()
        let length = min(size * count, source.bytes.count - source.offset)
        guard length > 0 else { return 0 }  // 0: the end of the message
        source.bytes.withUnsafeBytes { message in
            guard let start = message.baseAddress else { return }
            UnsafeMutableRawPointer(buffer).copyMemory(from: start + source.offset, byteCount: length)
        }
        source.offset += length
        return length
    }

    static let discard: telltale_curl_data_callback = { _, size, count, _ in size * count }
}
