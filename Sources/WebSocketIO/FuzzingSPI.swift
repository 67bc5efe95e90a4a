import NIOCore

// MARK: - Fuzzing seam

extension StompServer {
    /// Sets `channel` up exactly as the WebSocket listener sets up each accepted connection:
    /// admission as a pending connection, HTTP and the upgrade deadline, the upgrade to
    /// WebSocket on the configured path, and STOMP behind it.
    ///
    /// For the fuzz targets in `Fuzz/`, which drive the real pipeline on an `EmbeddedChannel`
    /// without a socket. It is SPI so that it stays out of the public API.
    ///
    /// - Parameter channel: a channel not yet active, on the loop the handlers will run on.
    /// - Throws: when a handler can't be added.
    @_spi(Fuzzing)
    public func configureAcceptedWebSocketConnection(_ channel: any Channel) throws {
        try configureConnection(channel, transport: .webSocket, tls: nil)
    }
}
