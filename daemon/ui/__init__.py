"""`db0 ui`: the local web inspector, served by the daemon on demand.

- `server.py`: the `UiServer` component (the HTTP listener on 127.0.0.1, its lifetime and idle
  timeout) and the request handler;
- `guard.py`: who may ask (the per-launch token, the Host and the Origin);
- `api.py`: the JSON API, routed by path; reads use the runtime's read connections, every change
  goes through the daemon's dispatcher as any client's request would;
- `queries.py`: the read-only queries the views need beyond the RPC methods (keyset pages,
  where each version came from, sessions with what hooks injected);
- `static/`: the page (HTML, CSS and plain JavaScript; nothing loaded from elsewhere).

Imports: the core runtime and the store; never the socket server or the handlers (the
dispatcher is reached through `Runtime.replay`).
"""
