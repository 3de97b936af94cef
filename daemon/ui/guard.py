"""Who may ask the inspector: the rules every request passes before anything is read.

1. Host must be exactly the served address, `127.0.0.1:PORT`: a page on another name that
   resolves to 127.0.0.1 (DNS rebinding) sends its own name and is refused.
2. An Origin, when sent, must be `http://127.0.0.1:PORT`: another site's page is refused even
   for reads. A request that changes something must send it (browsers always do for POST).
3. The per-launch token: in the page's URL (`?token=`) for the page itself, in the
   `X-Db0-Token` header for the API (a header, so no other site can make a browser send it),
   compared in constant time.

The token is never logged: refusals log the rule that failed, not what was sent.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

TOKEN_HEADER = "X-Db0-Token"


class Headers(Protocol):
    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    hint: str


def check(headers: Headers, *, port: int, token: str, given_token: str | None,
          writes: bool) -> Refusal | None:
    """The reason to refuse a request, or None when it may go on."""
    served = f"127.0.0.1:{port}"
    host = (headers.get("Host") or "").strip().lower()
    if host != served:
        return Refusal(403, "forbidden", "this address is not served here",
                       f"open the address db0 ui printed (http://{served}/...)")
    origin = headers.get("Origin")
    if origin is not None and origin.strip().lower() != f"http://{served}":
        return Refusal(403, "forbidden", "requests from another site are refused",
                       "use the db0 ui page itself")
    if writes and origin is None:
        return Refusal(403, "forbidden", "a change needs the page's Origin header",
                       f"send Origin: http://{served} (browsers do it by themselves)")
    if not given_token or not hmac.compare_digest(given_token.encode(), token.encode()):
        return Refusal(401, "bad_token", "this page's key is missing or belongs to another "
                       "launch of the inspector", "run db0 ui again and open the address it "
                       "prints")
    return None
