"""The daemon's long-lived services (components of the runtime): the embedder, the reranker,
the expiry job, the spool's replay, sync and the folder watcher. Each is a
`core.runtime.Component`; handlers find them by class through the runtime."""
