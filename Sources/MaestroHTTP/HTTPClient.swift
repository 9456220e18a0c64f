internal import CCurl
#if canImport(Glibc)
internal import Glibc
#endif

public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]?

    public init(method: String = "GET", url: String, headers: [(name: String, value: String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    public init(method: String, url: String, headers: [(name: String, value: String)] = [], text: String) {
        self.init(method: method, url: url, headers: headers, body: Array(text.utf8))
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Headers of the final response, names as the server sent them.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }
}

/// How a streamed request (`HTTPClient.stream`) ended.
public struct HTTPStreamResult: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    /// The body of an answer that was not streamed (not 2xx); empty otherwise.
    public var body: [UInt8]
    /// Whether the caller ended it (its data callback returned false, or `shouldStop` said so) rather
    /// than the server.
    public var endedByCaller: Bool

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }
}

/// Where a PEM document comes from: a file, or bytes in memory (curl's blob options).
public enum PEMSource: Sendable, Equatable {
    case file(String)
    case pem([UInt8])
}

public struct TLSOptions: Sendable, Equatable {
    public var certificateAuthority: PEMSource?
    public var clientCertificate: PEMSource?
    public var clientKey: PEMSource?
    /// Skip verification of the server's certificate. Only when asked for explicitly.
    public var insecure: Bool

    public init(certificateAuthority: PEMSource? = nil, clientCertificate: PEMSource? = nil, clientKey: PEMSource? = nil, insecure: Bool = false) {
        self.certificateAuthority = certificateAuthority
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.insecure = insecure
    }
}

public struct HTTPClientOptions: Sendable {
    public var connectTimeoutMilliseconds: Int
    public var totalTimeoutMilliseconds: Int
    public var tls: TLSOptions
    /// Sent as `Authorization: Bearer …` unless the request sets its own Authorization header.
    public var bearerToken: String?
    /// Redirects are not followed unless asked for.
    public var followRedirects: Bool
    public var maximumRedirects: Int
    /// A larger response body fails with `.responseTooLarge`.
    public var maximumResponseBytes: Int
    /// Pinned name resolutions, `host:port:address` (curl's CURLOPT_RESOLVE): the address checked is
    /// the address connected to.
    public var resolve: [String] = []
    /// curl's CURLOPT_CONNECT_TO entries, `host:port:connect-host:connect-port`; `::ADDRESS:` sends
    /// every connection of the request to ADDRESS whatever host the URL names.
    public var connectTo: [String] = []
    /// Proxies from the environment (`http_proxy`, `ALL_PROXY`, …) are used unless this is set.
    public var ignoreProxies = false

    public init(connectTimeoutMilliseconds: Int = 5_000, totalTimeoutMilliseconds: Int = 30_000, tls: TLSOptions = TLSOptions(),
                bearerToken: String? = nil, followRedirects: Bool = false, maximumRedirects: Int = 5,
                maximumResponseBytes: Int = 64 << 20) {
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.totalTimeoutMilliseconds = totalTimeoutMilliseconds
        self.tls = tls
        self.bearerToken = bearerToken
        self.followRedirects = followRedirects
        self.maximumRedirects = maximumRedirects
        self.maximumResponseBytes = maximumResponseBytes
    }
}

public struct HTTPError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case timeout
        case connectionRefused
        case hostNotFound
        case tls
        /// The connection broke while sending or receiving.
        case connectionLost
        case responseTooLarge
        case invalidRequest
        case other
    }

    public let kind: Kind
    public let message: String
    /// curl's error code, for diagnostics.
    public let code: Int

    public var description: String { "HTTP: \(message)" }

    /// Whether trying the same request again later may succeed.
    public var isTransient: Bool {
        switch kind {
        case .timeout, .connectionRefused, .connectionLost: return true
        default: return false
        }
    }
}

/// One libcurl easy handle: connections to a server are reused across requests. A client belongs to
/// one thread at a time; it is not safe to share between threads.
public final class HTTPClient {
    public var options: HTTPClientOptions
    private let handle: UnsafeMutableRawPointer

    private static let globalInit: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK
    }()

    public init(options: HTTPClientOptions = HTTPClientOptions()) throws(HTTPError) {
        guard Self.globalInit, let handle = curl_easy_init() else {
            throw HTTPError(kind: .other, message: "libcurl could not be initialised", code: -1)
        }
        self.options = options
        self.handle = handle
    }

    deinit {
        curl_easy_cleanup(handle)
    }

    /// Receives the body and headers through curl's callbacks.
    private final class Transfer {
        var body: [UInt8] = []
        var headers: [(name: String, value: String)] = []
        let limit: Int
        var exceeded = false
        init(limit: Int) { self.limit = limit }

        /// A streamed transfer's: a 2xx body goes to `deliver` as it arrives instead of into `body`.
        var deliver: (([UInt8]) -> Bool)?
        var shouldStop: () -> Bool = { false }
        var handle: UnsafeMutableRawPointer?
        var endedByCaller = false

        func record(headerLine data: UnsafeMutablePointer<CChar>?, length: Int) {
            guard let data else { return }
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                // A new response (after a redirect or 100 Continue): only the last one's headers count.
                headers.removeAll()
            } else if let colon = line.firstIndex(of: ":") {
                let name = String(line[..<colon])
                let value = String(line[line.index(after: colon)...]).trimmed(of: " \t\r\n")
                headers.append((name, value))
            }
        }
    }

    /// The lists curl reads during a transfer: they live until the transfer is over.
    private final class CurlLists {
        var headers: UnsafeMutablePointer<curl_slist>?
        var resolve: UnsafeMutablePointer<curl_slist>?
        var connectTo: UnsafeMutablePointer<curl_slist>?
        deinit {
            curl_slist_free_all(headers)
            curl_slist_free_all(resolve)
            curl_slist_free_all(connectTo)
        }
    }

    /// Everything of a request but its timeouts and callbacks: the URL and header checks, method, body,
    /// TLS, resolution and proxies. The handle must have been reset.
    private func configure(_ request: HTTPRequest) throws(HTTPError) -> CurlLists {
        let lists = CurlLists()

        // A Swift string reaches curl as a C string, which ends at a NUL: what curl would read must be
        // all there is. Printable ASCII only (control characters, spaces and non-ASCII bytes are
        // percent-encoded in a valid URL).
        if let bad = request.url.utf8.firstIndex(where: { $0 < 0x21 || $0 > 0x7E }) {
            let offset = request.url.utf8.distance(from: request.url.utf8.startIndex, to: bad)
            throw HTTPError(kind: .invalidRequest, message: "the URL contains a control character, space or non-ASCII byte at byte \(offset)", code: -1)
        }
        try check(maestro_curl_setopt_string(handle, CURLOPT_URL, request.url), "URL")
        try check(maestro_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols")
        try check(maestro_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1), "nosignal")
        try check(maestro_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, options.connectTimeoutMilliseconds), "connect timeout")
        if options.followRedirects {
            try check(maestro_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 1), "redirects")
            try check(maestro_curl_setopt_long(handle, CURLOPT_MAXREDIRS, options.maximumRedirects), "redirects")
            try check(maestro_curl_setopt_string(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"), "redirect protocols")
        }

        switch request.method {
        case "GET": try check(maestro_curl_setopt_long(handle, CURLOPT_HTTPGET, 1), "method")
        case "HEAD": try check(maestro_curl_setopt_long(handle, CURLOPT_NOBODY, 1), "method")
        default: try check(maestro_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method), "method")
        }
        if let body = request.body {
            try check(maestro_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE_LARGE, body.count), "body size")
            // COPYPOSTFIELDS copies the bytes, so the buffer need not outlive this call; an empty body
            // still needs a valid pointer (curl reads none of it), which `[0]` provides for the call.
            let bytes = body.isEmpty ? [0] : body
            let status = bytes.withUnsafeBufferPointer { buffer -> CURLcode in
                maestro_curl_setopt_pointer(handle, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: buffer.baseAddress))
            }
            try check(status, "body")
        }

        var hasAuthorization = false
        var hasContentType = false
        for header in request.headers {
            // A name is an RFC 9110 token; a value holds no control character but tab (a NUL would end
            // the C string, a line break would start another header).
            guard !header.name.isEmpty, header.name.utf8.allSatisfy(Self.isTokenByte) else {
                throw HTTPError(kind: .invalidRequest, message: "header name \(Self.printable(header.name)) is not a token (letters, digits, !#$%&'*+-.^_`|~)", code: -1)
            }
            guard !header.value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) else {
                throw HTTPError(kind: .invalidRequest, message: "header \(header.name) contains a control character", code: -1)
            }
            if header.name.lowercased() == "authorization" { hasAuthorization = true }
            if header.name.lowercased() == "content-type" { hasContentType = true }
            lists.headers = curl_slist_append(lists.headers, "\(header.name): \(header.value)")
        }
        if let token = options.bearerToken, !hasAuthorization {
            lists.headers = curl_slist_append(lists.headers, "Authorization: Bearer \(token)")
        }
        if request.body != nil && !hasContentType {
            // curl would otherwise claim application/x-www-form-urlencoded.
            lists.headers = curl_slist_append(lists.headers, "Content-Type: application/octet-stream")
        }
        // Disable curl's automatic "Expect: 100-continue", which stalls large bodies by a second.
        lists.headers = curl_slist_append(lists.headers, "Expect:")
        try check(maestro_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, lists.headers), "headers")

        try configureTLS()
        if !options.resolve.isEmpty {
            for entry in options.resolve { lists.resolve = curl_slist_append(lists.resolve, entry) }
            try check(maestro_curl_setopt_slist(handle, CURLOPT_RESOLVE, lists.resolve), "resolve")
        }
        if !options.connectTo.isEmpty {
            for entry in options.connectTo { lists.connectTo = curl_slist_append(lists.connectTo, entry) }
            try check(maestro_curl_setopt_slist(handle, CURLOPT_CONNECT_TO, lists.connectTo), "connect-to")
        }
        if options.ignoreProxies {
            try check(maestro_curl_setopt_string(handle, CURLOPT_PROXY, ""), "proxy")
        }

        return lists
    }

    public func perform(_ request: HTTPRequest) throws(HTTPError) -> HTTPResponse {
        curl_easy_reset(handle)
        let transfer = Transfer(limit: options.maximumResponseBytes)
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        let lists = try configure(request)
        try check(maestro_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, options.totalTimeoutMilliseconds), "timeout")
        try check(maestro_curl_setopt_callback(handle, CURLOPT_WRITEFUNCTION, { data, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            let length = size * count
            if transfer.body.count + length > transfer.limit {
                transfer.exceeded = true
                return 0
            }
            if let data { transfer.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length)) }
            return length
        }), "write callback")
        try check(maestro_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context), "write data")
        try setHeaderCallback(context)

        let result = withExtendedLifetime(lists) { curl_easy_perform(handle) }
        if transfer.exceeded {
            throw HTTPError(kind: .responseTooLarge, message: "response from \(Self.redact(request.url)) exceeds \(options.maximumResponseBytes) bytes", code: Int(result.rawValue))
        }
        guard result == CURLE_OK else { throw Self.error(result, url: request.url) }
        var status = 0
        _ = maestro_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: transfer.headers, body: transfer.body)
    }

    private func setHeaderCallback(_ context: UnsafeMutableRawPointer) throws(HTTPError) {
        try check(maestro_curl_setopt_callback(handle, CURLOPT_HEADERFUNCTION, { data, size, count, context in
            Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue().record(headerLine: data, length: size * count)
            return size * count
        }), "header callback")
        try check(maestro_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, context), "header data")
    }

    /// A request whose response body is handed to `onData` in pieces as they arrive — a Kubernetes
    /// watch: a chunked answer that lasts minutes. It has no total timeout and no size limit; instead a
    /// connection that carries no byte for `idleTimeoutSeconds` fails with `.timeout` (a dead peer is
    /// noticed; a watch's server sends bookmarks well within that). The transfer ends early, without an
    /// error, when `onData` returns false or `shouldStop` returns true; curl asks `shouldStop` about once
    /// a second even while nothing arrives, so a blocked stream ends within about a second of a stop.
    /// Only a 2xx body is streamed: any other answer's body (an error Status) is returned whole, within
    /// `maximumResponseBytes`, in the response.
    public func stream(_ request: HTTPRequest, idleTimeoutSeconds: Int, shouldStop: @escaping () -> Bool = { false },
                       onData: @escaping ([UInt8]) -> Bool) throws(HTTPError) -> HTTPStreamResult {
        curl_easy_reset(handle)
        let transfer = Transfer(limit: options.maximumResponseBytes)
        transfer.deliver = onData
        transfer.shouldStop = shouldStop
        transfer.handle = handle
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        let lists = try configure(request)
        try check(maestro_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, 0), "timeout")
        try check(maestro_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1), "idle timeout")
        try check(maestro_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, max(1, idleTimeoutSeconds)), "idle timeout")
        try check(maestro_curl_setopt_callback(handle, CURLOPT_WRITEFUNCTION, { data, size, count, context in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            let length = size * count
            var status = 0
            _ = maestro_curl_getinfo_long(transfer.handle, CURLINFO_RESPONSE_CODE, &status)
            if (200..<300).contains(status), let deliver = transfer.deliver {
                let chunk = data.map { Array(UnsafeRawBufferPointer(start: $0, count: length)) } ?? []
                guard !transfer.shouldStop(), deliver(chunk) else {
                    transfer.endedByCaller = true
                    return 0
                }
                return length
            }
            if transfer.body.count + length > transfer.limit {
                transfer.exceeded = true
                return 0
            }
            if let data { transfer.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length)) }
            return length
        }), "write callback")
        try check(maestro_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context), "write data")
        try setHeaderCallback(context)
        try check(maestro_curl_setopt_long(handle, CURLOPT_NOPROGRESS, 0), "progress")
        try check(maestro_curl_setopt_xferinfo(handle, { context, _, _, _, _ in
            let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
            guard transfer.shouldStop() else { return 0 }
            transfer.endedByCaller = true
            return 1
        }), "progress callback")
        try check(maestro_curl_setopt_pointer(handle, CURLOPT_XFERINFODATA, context), "progress data")

        let result = withExtendedLifetime(lists) { curl_easy_perform(handle) }
        var status = 0
        _ = maestro_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        if transfer.endedByCaller {
            return HTTPStreamResult(status: status, headers: transfer.headers, body: transfer.body, endedByCaller: true)
        }
        if transfer.exceeded {
            throw HTTPError(kind: .responseTooLarge, message: "response from \(Self.redact(request.url)) exceeds \(options.maximumResponseBytes) bytes", code: Int(result.rawValue))
        }
        guard result == CURLE_OK else { throw Self.error(result, url: request.url) }
        return HTTPStreamResult(status: status, headers: transfer.headers, body: transfer.body, endedByCaller: false)
    }

    /// RFC 9110 `tchar`.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// A name for an error message, control characters shown escaped.
    static func printable(_ text: String) -> String {
        String(text.unicodeScalars.prefix(100).map { $0.value < 0x20 || $0.value == 0x7F ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined())
    }

    private func configureTLS() throws(HTTPError) {
        let tls = options.tls
        if tls.insecure {
            try check(maestro_curl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 0), "TLS")
            try check(maestro_curl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 0), "TLS")
        }
        switch tls.certificateAuthority {
        case .file(let path): try check(maestro_curl_setopt_string(handle, CURLOPT_CAINFO, path), "CA file")
        case .pem(let bytes): try setBlob(CURLOPT_CAINFO_BLOB, bytes, "CA")
        case nil: break
        }
        switch tls.clientCertificate {
        case .file(let path): try check(maestro_curl_setopt_string(handle, CURLOPT_SSLCERT, path), "client certificate")
        case .pem(let bytes): try setBlob(CURLOPT_SSLCERT_BLOB, bytes, "client certificate")
        case nil: break
        }
        if tls.clientCertificate != nil {
            try check(maestro_curl_setopt_string(handle, CURLOPT_SSLCERTTYPE, "PEM"), "client certificate type")
        }
        switch tls.clientKey {
        case .file(let path): try check(maestro_curl_setopt_string(handle, CURLOPT_SSLKEY, path), "client key")
        case .pem(let bytes): try setBlob(CURLOPT_SSLKEY_BLOB, bytes, "client key")
        case nil: break
        }
        if tls.clientKey != nil {
            try check(maestro_curl_setopt_string(handle, CURLOPT_SSLKEYTYPE, "PEM"), "client key type")
        }
    }

    private func setBlob(_ option: CURLoption, _ bytes: [UInt8], _ what: String) throws(HTTPError) {
        let status = bytes.withUnsafeBufferPointer { buffer in
            maestro_curl_setopt_blob(handle, option, buffer.baseAddress, buffer.count)
        }
        try check(status, what)
    }

    private func check(_ code: CURLcode, _ what: String) throws(HTTPError) {
        guard code == CURLE_OK else {
            throw HTTPError(kind: .invalidRequest, message: "cannot set \(what): \(String(cString: curl_easy_strerror(code)))", code: Int(code.rawValue))
        }
    }

    /// URLs may carry credentials in their user-info; errors never repeat them.
    static func redact(_ url: String) -> String {
        let parts = url.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return url }
        let rest = parts[1]
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return parts[0] + "://***@" + rest[rest.index(after: at)...]
    }

    private static func error(_ code: CURLcode, url: String) -> HTTPError {
        let text = String(cString: curl_easy_strerror(code))
        let target = redact(url)
        let kind: HTTPError.Kind
        switch code {
        case CURLE_OPERATION_TIMEDOUT: kind = .timeout
        case CURLE_COULDNT_CONNECT: kind = .connectionRefused
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: kind = .hostNotFound
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS:
            kind = .tls
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            kind = .connectionLost
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL, CURLE_TOO_MANY_REDIRECTS: kind = .invalidRequest
        default: kind = .other
        }
        return HTTPError(kind: kind, message: "\(target): \(text)", code: Int(code.rawValue))
    }
}

extension String {
    fileprivate func trimmed(of set: String) -> String {
        let characters = Set(set)
        var slice = Substring(self)
        while let first = slice.first, characters.contains(first) { slice = slice.dropFirst() }
        while let last = slice.last, characters.contains(last) { slice = slice.dropLast() }
        return String(slice)
    }
}

/// Name resolution through getaddrinfo: the numeric addresses of a host.
public enum HostResolver {
    public static func addresses(of host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var addresses: [String] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                let address = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if !addresses.contains(address) { addresses.append(address) }
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }
}
