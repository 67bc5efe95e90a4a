/// The shell's link-event methods are in ClusterShell.swift, next to the state they change.
extension ClusterShell: LinkHandlerEvents {}
