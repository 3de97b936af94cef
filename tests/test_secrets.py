"""Secrets never reach the disk: every planted format is redacted on every write path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Db0

from db0.store import secrets

PLANTED = {
    "aws-access-key": "AKIAQWERTYUIOPASDFGH",
    "github-token": "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "gitlab-token": "glpat-Zx9Yw8Vu7Ts6Rq5Po4Nm",
    "slack-token": "xoxb-123456789012-abcdefghijkl",
    "openai-key": "sk-proj-Qm9sT2xLpV8nR4kW1yZ7aB3cD6",
    "anthropic-key": "sk-ant-api03-Hq2Lm9Xv4Tr8Ks1Pw6Zn3Bd7",
    "jwt": ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    "url-password": "Tr0ub4dor-and-3",
    "private-key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
}


def _texts() -> list[str]:
    key = PLANTED["private-key"]
    return [
        f"aws {PLANTED['aws-access-key']} in the env",
        f"the gh token {PLANTED['github-token']} for CI",
        f"gitlab {PLANTED['gitlab-token']}",
        f"slack bot {PLANTED['slack-token']}",
        f"openai {PLANTED['openai-key']}",
        f"claude {PLANTED['anthropic-key']}",
        f"session cookie {PLANTED['jwt']}",
        f"db is postgresql://app:{PLANTED['url-password']}@db.internal:5432/prod",
        f"-----BEGIN RSA PRIVATE KEY-----\n{key}\n-----END RSA PRIVATE KEY-----",
    ]


def test_planted_secrets_are_absent_everywhere(db0: Db0) -> None:
    texts = _texts()
    for t in texts[:5]:
        r = db0.json("remember", t)
        assert r["redacted"], t
    db0.run("remember", "-", input=texts[5])
    lines = "\n".join(json.dumps({"content": t, "metadata": {"note": t}}) for t in texts[6:])
    imp = db0.json("import", "-", input=lines)
    assert sum(imp["redacted"].values()) >= 3
    private = db0.json("remember", "meeting notes <private>salary is 99k</private> done")
    assert private["redacted"] == {"private": 1}
    exported = db0.run("export").out
    assert "[REDACTED:github-token]" in exported and "salary" not in exported
    db0.stop()
    files = [*(db0.home / "data").glob("db0.sqlite3*"), *(db0.home / "logs").glob("*")]
    blob = b"".join(p.read_bytes() for p in files if p.is_file())
    for kind, value in PLANTED.items():
        assert value.encode() not in blob, kind
        assert value not in exported, kind
    assert b"salary is 99k" not in blob


def test_allow_secrets_keeps_one_write_but_never_private(db0: Db0) -> None:
    r = db0.json("remember", "--allow-secrets", f"keep {PLANTED['github-token']} "
                 "<private>not this</private>")
    assert r["redacted"] == {"private": 1}
    content = db0.json("show", r["id"])["content"]
    assert PLANTED["github-token"] in content and "not this" not in content


@pytest.mark.parametrize("prose", [
    "Refactored the authentication middleware to use dependency injection everywhere",
    "commit 3f9a2c1b7e4d5f6a8b9c0d1e2f3a4b5c6d7e8f9a fixed the flaky test",
    "The password policy requires twelve characters",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "skip-to-content is a link; sk- prefix alone is fine",
])
def test_ordinary_prose_is_not_flagged(prose: str) -> None:
    assert secrets.redact(prose) == (prose, {})


def test_each_pattern_alone() -> None:
    for text, (kind, value) in zip(_texts(), PLANTED.items(), strict=True):
        out, found = secrets.redact(text)
        assert value not in out and found, (kind, out)


def test_bad_input_writes_nothing(db0: Db0, tmp_path: Path) -> None:
    r = db0.run("remember", "<private>everything</private>", check=False)
    assert r.code == 1 and "empty" in r.err
    assert db0.json("stats")["memories"] == 0


MORE = {
    "github-token": "gho_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2Yz3",
    "github-pat": "github_pat_" + "11ABCDEFG0" + "x" * 12 + "_" + "Yz9" * 10,
    "slack-webhook": "https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/" + "q" * 24,
    "aws-secret-key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "password-assignment": "hunter2-is-not-safe",
    "anthropic-admin": "sk-ant-admin01-" + "Rt5Yu6Io7Pa8Sd9Fg0Hj1Kl2",
}


def test_more_formats_and_checkpoints_leave_no_trace(db0: Db0) -> None:
    texts = [
        f"old oauth {MORE['github-token']}",
        f"fine-grained {MORE['github-pat']}",
        f"alerts go to {MORE['slack-webhook']}",
        f"aws_secret_access_key = {MORE['aws-secret-key']}",
        f"login with password={MORE['password-assignment']} please",
        f"admin key {MORE['anthropic-admin']}",
    ]
    for t in texts:
        assert db0.json("remember", t)["redacted"], t
    state = json.dumps({"env": texts, MORE["github-token"]: "as a key"})
    cp = db0.run("checkpoint", "create", "--session", "s-secret", "--label",
                 f"deploy {MORE['github-pat']}", "--state", "-", input=state)
    assert "redacted before storing" in cp.err
    shown = json.dumps(db0.json("checkpoint", "show", cp.out.strip()))
    exported = db0.run("export", "--all").out if _has_all(db0) else db0.run("export").out
    db0.stop()
    files = [*(db0.home / "data").glob("db0.sqlite3*"), *(db0.home / "logs").glob("*")]
    blob = b"".join(p.read_bytes() for p in files if p.is_file())
    for kind, value in MORE.items():
        assert value.encode() not in blob, kind
        assert value not in exported and value not in shown, kind
    assert "[REDACTED:github-token]" in shown


def _has_all(db0: Db0) -> bool:
    return "--all" in db0.run("export", "--help").out


def test_assignments_in_their_common_spellings_and_redaction_is_idempotent() -> None:
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    for text in (f"export AWS_SECRET_ACCESS_KEY={key}", f'"aws_secret_access_key": "{key}"',
                 "DB_PASSWORD=s3cr3t-value", '{"api_key": "abcdef123456"}',
                 "OPENAI_API_KEY: whatever-it-is"):
        out, found = secrets.redact(text)
        assert found and "REDACTED" in out, text
        assert secrets.redact(out) == (out, {}), out  # a capture of db0's own output
    for text in _texts():
        once = secrets.redact(text)[0]
        assert secrets.redact(once) == (once, {}), once


def test_the_grouped_prefilter_redacts_as_the_plain_list(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """`maybe_secret` searches an ASCII text for a few characters first and only then for the
    literals of their groups; on generated texts made of secret formats' pieces (in every case,
    with and without the characters they need, beyond ASCII too) `redact` gives what it gives
    with the plain literal list, and for ASCII texts what the patterns give with no prefilter."""
    import random

    def plain(text: str) -> bool:
        low = text.lower()
        return any(lit in low for lit in secrets.MAYBE)

    pieces = [*secrets.MAYBE, *(m.upper() for m in secrets.MAYBE), *PLANTED.values(),
              "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", "AKIA", "ASIA",
              "AIza" + "b" * 35, "sk-ant-" + "x" * 24, "sk_live_" + "a" * 24, "rk_test_",
              "github_pat_" + "A" * 24, "ghs_" + "z" * 40, "eyJ" + "a" * 10 + ".eyJ" + "b" * 10
              + "." + "c" * 10, "https://hooks.slack.com/services/" + "T" * 24,
              "aws_secret_access_key", "AWS_SECRET_ACCESS_KEY = ", "A" * 40, "password",
              "Passwd", "PWD", "client_secret", "ApiKey", "api_key", "access_token",
              "AUTH_TOKEN", "<private>", "</private>", "<PRIVATE>", "://", "user:", "@host",
              ":", "=", " = ", "\"", "'", "-", "_", " ", "\n", "word", "hunter2345",
              "s3cr3t-value", "ſecret", "\u212aey", "İ", "é", "x" * 8, "0123456789" * 2]
    rng = random.Random(17)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 9)))
             for _ in range(20_000)]
    new = [secrets.redact(t) for t in texts]
    assert sum(n[1] != {} for n in new) > 2_000  # the texts hold many secrets
    monkeypatch.setattr(secrets, "maybe_secret", plain)
    assert [secrets.redact(t) for t in texts] == new
    monkeypatch.setattr(secrets, "maybe_secret", lambda text: True)
    assert [secrets.redact(t) for t in texts if t.isascii()] == [
        n for t, n in zip(texts, new, strict=True) if t.isascii()]
