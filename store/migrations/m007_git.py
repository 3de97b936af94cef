"""Git capture: commits rewritten by an amend or a rebase.

`git_rewrites` remembers each old -> new pair that `post-rewrite` reported, so a capture of the
old commit that arrives late (hooks run in the background and race) is stored already
superseded instead of coming back as a live memory.
"""

from __future__ import annotations

import apsw

SQL = """
CREATE TABLE git_rewrites (
    repo TEXT NOT NULL,
    old_sha TEXT NOT NULL,
    new_sha TEXT NOT NULL,
    kind TEXT NOT NULL,            -- 'amend' or 'rebase'
    ts REAL NOT NULL,
    PRIMARY KEY (repo, old_sha)
) WITHOUT ROWID;
"""


def migrate(conn: apsw.Connection) -> None:
    conn.execute(SQL)
