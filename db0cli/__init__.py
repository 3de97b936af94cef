"""The db0 command line: parsing, rendering, and calls to the daemon over its socket.

Imports only `db0.daemon`'s client, protocol and paths modules: never the store or the heavy
libraries (apsw, sqlite_vec, llama_cpp, psycopg, watchdog). A test checks it.
"""
