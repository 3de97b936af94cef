"""The daemon's core: the typed runtime (config, writer, readers, services), the declared
parameter shapes, the one dispatcher and the socket server. Nothing here imports a handler;
only the server (on top) and the component list know the services by name."""
