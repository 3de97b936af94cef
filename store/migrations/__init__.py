"""Schema steps, one module each: `mNNN_name.py` with `migrate(conn)`, run in order by db.py."""
