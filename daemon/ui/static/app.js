// The db0 inspector's page: plain JavaScript, no libraries, nothing loaded from elsewhere.
// Every request sends the launch's token in the X-Db0-Token header. Text from memories is
// only ever set as textContent (never parsed as HTML).
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const main = document.getElementById("main");
let connState = "ok";  // ok | down | stale

// -- DOM helpers -------------------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
function add(el, ...kids) { el.append(...kids.flat().filter(k => k !== null && k !== undefined && k !== false)); }
// Ids are shown whole: ids made in the same millisecond share their first ten characters.
function short(id) { return id ? String(id) : ""; }
function when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }
function localInput(iso) {  // an ISO time as a datetime-local input's value
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = n => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}
function link(hash, text) { return h("a", {href: hash}, text); }
function factLink(id, text) { return link("#/fact?id=" + encodeURIComponent(id), text || short(id)); }

function errorBox(err) {
  const e = err && err.error ? err.error : {message: String(err), hint: ""};
  return h("div", {class: "error", role: "alert"}, e.message || "failed",
           e.hint ? " (to fix: " + e.hint + ")" : "");
}

// -- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ("HTTP " + status));
    this.status = status; this.body = body; this.error = body && body.error;
  }
}

async function api(path, body) {
  const opts = {headers: {"X-Db0-Token": TOKEN}, cache: "no-store"};
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    setConn("down");
    throw new ApiError(0, {error: {message: "the daemon is not answering",
                                   hint: "it may be stopped or restarting; this page retries"}});
  }
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) setConn("stale");
  else setConn("ok");
  if (!resp.ok) throw new ApiError(resp.status, data || {error: {message: "HTTP " + resp.status}});
  return data;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) p.set(k, v);
  const s = p.toString();
  return s ? "?" + s : "";
}

// -- connection state: ping, say what happened, reconnect ----------------------------------

function setConn(state) {
  const was = connState;
  connState = state;
  const banner = document.getElementById("banner");
  const conn = document.getElementById("conn");
  if (state === "ok") {
    banner.hidden = true;
    conn.textContent = "connected";
    if (was !== "ok") { toast("Reconnected to the daemon."); route(); }
  } else if (state === "down") {
    banner.hidden = false; banner.className = "banner";
    banner.textContent = "The daemon is not answering (stopped, restarting, or the inspector " +
      "closed after being idle). Retrying every few seconds… If it restarted, run db0 ui again.";
    conn.textContent = "disconnected";
  } else {
    banner.hidden = false; banner.className = "banner bad";
    banner.textContent = "This page's key belongs to an earlier launch of the inspector (the " +
      "daemon restarted, or the inspector was closed and opened again). Run db0 ui again and " +
      "open the address it prints.";
    conn.textContent = "key no longer valid";
  }
}

async function ping() {
  try { await api("/api/ping"); } catch (e) { /* setConn said it */ }
}
setInterval(ping, 4000);

let toastTimer = null;
function toast(text, undo) {
  const t = document.getElementById("toast");
  clear(t).append(h("span", {}, text));
  if (undo) t.append(h("button", {onclick: () => { t.hidden = true; undo(); }}, "Undo"));
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, undo ? 12000 : 4000);
}

// -- routing -----------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [view, query] = raw.split("?");
  return {view: view || "memories", params: new URLSearchParams(query || "")};
}

async function route() {
  const {view, params} = parseHash();
  for (const a of document.querySelectorAll("header nav a"))
    a.classList.toggle("active", a.dataset.view === view ||
      (a.dataset.view === "sessions" && view === "session") ||
      (a.dataset.view === "memories" && view === "fact"));
  const views = {memories: viewMemories, fact: viewFact, sessions: viewSessions,
                 session: viewSession, health: viewHealth};
  const fn = views[view];
  clear(main);
  if (!fn) { main.append(errorBox({error: {message: "no such view: " + view, hint: "use the menu"}})); return; }
  try { await fn(params); }
  catch (e) { main.append(errorBox(e)); }
}
window.addEventListener("hashchange", route);

// -- Memories ----------------------------------------------------------------------------

const FILTERS = ["q", "scope", "agent", "session", "task", "tag", "source", "state", "as_of"];
let facetsCache = null;

async function facets() {
  if (!facetsCache) facetsCache = await api("/api/facets");
  return facetsCache;
}

function select(name, values, current, blank) {
  return h("select", {name}, h("option", {value: ""}, blank || "any"),
           values.map(v => h("option", {value: v, selected: v === current}, v)));
}

function datalist(id, values) {
  return h("datalist", {id}, values.map(v => h("option", {value: v.id || v},
           v.label ? v.label : null)));
}

async function viewMemories(params) {
  const f = await facets();
  const cur = {};
  for (const k of FILTERS) cur[k] = params.get(k) || "";
  const form = h("form", {class: "filters", id: "filters", onsubmit: (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const out = {};
      for (const k of FILTERS) out[k] = (fd.get(k) || "").trim();
      if (out.as_of) out.as_of = new Date(out.as_of).toISOString();
      location.hash = "#/memories" + qs(out);
    }},
    h("label", {}, "Search (same ranking as db0 recall)",
      h("input", {class: "q", name: "q", id: "q", type: "search", value: cur.q,
                  placeholder: "words or a question"})),
    h("label", {}, "Scope", select("scope", f.scopes, cur.scope)),
    h("label", {}, "Agent", h("input", {name: "agent", list: "agents", value: cur.agent, size: 10})),
    h("label", {}, "Session", h("input", {name: "session", list: "sessions", value: cur.session, size: 12})),
    h("label", {}, "Task", h("input", {name: "task", list: "tasks", value: cur.task, size: 10})),
    h("label", {}, "Tag", h("input", {name: "tag", list: "tags", value: cur.tag, size: 10})),
    h("label", {}, "Source", select("source", f.sources, cur.source)),
    h("label", {}, "State", select("state", f.states, cur.state || "live", "live")),
    h("label", {}, "As of (local time)", h("input", {name: "as_of", type: "datetime-local", step: 1,
      value: cur.as_of ? localInput(cur.as_of) : ""})),
    h("button", {class: "primary", type: "submit", id: "go"}, cur.q ? "Search" : "Show"),
    datalist("agents", f.agents), datalist("sessions", f.sessions), datalist("tasks", f.tasks),
    datalist("tags", f.tags));
  const list = h("div", {id: "results"});
  main.append(h("h2", {}, "Memories"), form, list);
  await loadMemories(list, cur, null);
}

const PAGE = 50;
const LOOK_MS = 8000;  // a rare filter: keep asking (each answer is bounded) this long

async function loadMemories(list, cur, before) {
  // A filter no index serves answers partial pages (each request reads for ~40 ms); the page
  // asks again from where the last stopped until it has a page, or for LOOK_MS at most.
  const started = Date.now();
  const status = h("p", {class: "muted small", id: "looking"});
  for (const old of list.querySelectorAll(".took")) old.remove();
  let data, shown = 0, took = 0;
  for (;;) {
    const q = {...cur};
    if (before) q.before = before;
    try { data = await api("/api/memories" + qs(q)); }
    catch (e) { status.remove(); list.append(errorBox(e)); return; }
    took += data.took_ms || 0;
    for (const n of data.notices || []) list.append(h("div", {class: "notice"}, n));
    for (const m of data.memories) list.insertBefore(memoryCard(m, !!data.search), status.parentNode ? status : null);
    shown += data.memories.length;
    if (!data.partial || !data.next || shown >= PAGE || Date.now() - started > LOOK_MS) break;
    before = data.next;
    if (!status.parentNode) list.append(status);
    status.textContent = "looking further back… (down to row " + before + ")";
  }
  status.remove();
  if (!shown && !list.querySelector(".card.memory"))
    list.append(h("p", {class: "muted", id: "empty"}, data.next ? "Nothing yet: this filter " +
      "has no index, and the rows read so far hold none." : cur.q ? "Nothing found." : "No memories match."));
  if (data.next) {
    const moreBox = h("div", {class: "more"});
    const label = data.partial ? "Keep looking" : "More";
    moreBox.append(h("button", {id: "more", onclick: async () => {
      moreBox.remove(); await loadMemories(list, cur, data.next); }}, label));
    if (data.partial)
      moreBox.append(h("span", {class: "muted small"}, "  (read down to row " + data.next + ")"));
    list.append(moreBox);
  }
  if (data.took_ms !== undefined && data.took_ms !== null)
    list.append(h("p", {class: "muted small took"}, "answered in " + Math.round(took * 10) / 10 + " ms" +
      (data.embed_ms ? " (embedding the query: " + data.embed_ms + " ms)" : "")));
}

function stateBadge(m) {
  if (m.forgotten_at) return h("span", {class: "badge gone"}, "forgotten");
  if (m.superseded_by) return h("span", {class: "badge gone"}, "superseded");
  if (m.expires_at && Date.parse(m.expires_at) <= Date.now()) return h("span", {class: "badge gone"}, "expired");
  return null;
}

function sourceText(s) {
  if (!s) return "";
  let t = s.source;
  if (s.agent) t += " · " + s.agent;
  if (s.via) t += " · " + s.via;
  if (s.remote) t += " · from " + s.remote;
  return t;
}

const PARTS = [
  ["relevance", v => v, "relevance"], ["bm25", v => v, "keyword (bm25)"],
  ["vector_distance", v => 1 - v, "meaning (1 − dist)"], ["context", v => v, "context"],
  ["recency", v => v, "recency"], ["fused", v => v, "fused"],
];

function scoreBars(m) {
  const p = m.score_parts || {};
  const grid = h("div", {class: "bars", title: "score parts, as memory.recall gives them"});
  const row = (label, value, raw) => {
    const bar = h("div", {class: "bar"}, h("span", {}));
    bar.firstChild.style.width = Math.max(0, Math.min(1, value)) * 100 + "%";
    grid.append(h("span", {}, label), bar, h("span", {class: "mono"}, raw));
  };
  row("score", Math.min(1, m.score), String(m.score));
  const maxBm = 1;
  for (const [key, fn, label] of PARTS) {
    if (p[key] === undefined) continue;
    let v = fn(p[key]);
    if (key === "bm25") v = Math.min(maxBm, p.relevance !== undefined ? p[key] / (p[key] + 5) : v);
    row(label, v, String(p[key]));
  }
  for (const w of ["scope_weight", "speaker_weight", "question_weight", "date_weight"])
    if (p[w] !== undefined) grid.append(h("span", {}, w.replace("_", " ")), h("span"), h("span", {class: "mono"}, "×" + p[w]));
  return grid;
}

function memoryCard(m, search) {
  const card = h("div", {class: "card memory", "data-id": m.id},
    h("div", {class: "content"}, m.content),
    h("div", {class: "meta"},
      factLink(m.id, short(m.id)),
      h("span", {class: "badge"}, m.scope), h("span", {}, "agent " + m.agent),
      m.session ? h("span", {}, "session ", link("#/session?id=" + encodeURIComponent(m.session), short(m.session))) : null,
      m.task ? h("span", {}, "task " + short(m.task)) : null,
      m.key ? h("span", {}, "key ", link("#/fact?key=" + encodeURIComponent(m.key), m.key)) : null,
      h("span", {class: "source"}, sourceText(m.source)),
      h("span", {}, when(m.created_at)),
      (m.tags || []).length ? h("span", {}, "tags: " + m.tags.join(", ")) : null,
      m.pinned ? h("span", {class: "badge pinned"}, "pinned") : null,
      stateBadge(m)),
    search ? scoreBars(m) : null,
    actionsFor(m));
  return card;
}

function actionsFor(m) {
  const live = !m.forgotten_at && !m.superseded_by &&
    !(m.expires_at && Date.parse(m.expires_at) <= Date.now());
  return h("div", {class: "actions"},
    h("button", {class: "timeline-btn", onclick: () => { location.hash = "#/fact?id=" + encodeURIComponent(m.id); }}, "Timeline"),
    live ? h("button", {class: "edit-btn", onclick: () => editDialog(m)}, "Edit") : null,
    live ? h("button", {class: "pin-btn", onclick: () => confirmAction(m.pinned ? "unpin" : "pin", {id: m.id})},
             m.pinned ? "Unpin" : "Pin") : null,
    live ? h("button", {class: "link-btn", onclick: () => linkDialog(m)}, "Link") : null,
    live ? h("button", {class: "danger forget-btn", onclick: () => confirmAction("forget", {id: m.id})}, "Forget") : null);
}

// -- actions: preview, confirm, do, undo -----------------------------------------------------

const dialog = document.getElementById("dialog");
const dialogBody = document.getElementById("dialog-body");

function openDialog(...kids) {
  add(clear(dialogBody), ...kids);
  if (!dialog.open) dialog.showModal();
}
function closeDialog() { if (dialog.open) dialog.close(); }

function describe(m) {
  if (!m) return "";
  return (m.content || "") + "\n\n" + [m.pinned ? "pinned" : "not pinned",
    "tags: " + ((m.tags || []).join(", ") || "none"), "key: " + (m.key || "none")].join(" · ");
}

async function confirmAction(action, params, note) {
  let pv;
  try { pv = await api("/api/preview", {action, params}); }
  catch (e) { openDialog(h("h3", {}, "Cannot " + action), errorBox(e),
                         h("div", {class: "buttons"}, h("button", {onclick: closeDialog}, "Close"))); return; }
  const body = [h("h3", {}, "Before you " + action.replace("_", " ")), note || null,
                h("p", {id: "preview-summary"}, pv.summary)];
  if (pv.after) body.push(h("div", {class: "diff"}, h("div", {}, h("b", {}, "now\n"), describe(pv.before)),
                            h("div", {}, h("b", {}, "after\n"), describe(pv.after))));
  else if (pv.before) body.push(h("div", {class: "diff one"}, h("div", {}, describe(pv.before))));
  if (pv.changes && Array.isArray(pv.changes)) {
    body.push(h("ul", {class: "small"}, pv.changes.slice(0, 50).map(c =>
      h("li", {}, c.will + " ", factLink(c.id), ": " + c.content))));
  }
  body.push(h("p", {class: "muted small"}, "Undo: " + pv.undo));
  const status = h("div");
  const go = h("button", {class: "primary", id: "confirm", disabled: pv.changes === false,
    onclick: async () => {
      go.disabled = true;
      try {
        const res = await api("/api/action", {action, params});
        closeDialog();
        done(action, res);
      } catch (e) {
        if (e.status === 409) return conflict(e.body, action, params);
        clear(status).append(errorBox(e)); go.disabled = false;
      }
    }}, "Do it");
  body.push(status, h("div", {class: "buttons"}, h("button", {onclick: closeDialog}, "Cancel"), go));
  openDialog(...body);
}

function done(action, res) {
  let text = action.replace("_", " ") + ": " + (res.status || "done");
  if (res.status === "duplicate") text = "nothing changed: the same text is already stored as " + short(res.id);
  const undo = res.undo ? () => confirmAction(res.undo.action, res.undo.params, h("p", {}, "Undo: edit it back.")) : null;
  toast(text + (res.id ? " (" + short(res.id) + ")" : ""), undo);
  route();
}

function conflict(body, action, params) {
  const cur = body.current;
  const mine = (body.yours && body.yours.params) || params;
  const area = h("textarea", {id: "yours"}, mine.content || (cur && cur.content) || "");
  openDialog(
    h("h3", {}, "Someone changed this fact first"),
    errorBox(body),
    h("p", {}, "The current version (", factLink(cur.id), "):"),
    h("div", {class: "diff one"}, h("div", {id: "current"}, describe(cur))),
    h("p", {}, "Your change, kept here so nothing is lost:"), area,
    h("div", {class: "buttons"},
      h("button", {onclick: closeDialog}, "Discard mine"),
      h("button", {class: "primary", id: "reapply", onclick: () => {
        const next = {...mine, id: cur.id};
        if (mine.content !== undefined || action === "edit") next.content = area.value;
        closeDialog();
        confirmAction(action === "edit" ? "edit" : action, next);
      }}, "Apply mine to the current version")));
}

function editDialog(m) {
  const content = h("textarea", {id: "edit-content"}, m.content);
  const tags = h("input", {id: "edit-tags", value: (m.tags || []).join(", "), size: 40});
  const key = h("input", {id: "edit-key", value: m.key || "", size: 30});
  const pinned = h("input", {id: "edit-pinned", type: "checkbox", checked: !!m.pinned});
  openDialog(
    h("h3", {}, "Edit ", short(m.id)),
    h("p", {class: "muted small"}, "An edit is a new version that supersedes this one; the old one stays in history."),
    content,
    h("p", {}, h("label", {}, "Tags ", tags), " ", h("label", {}, "Key ", key), " ",
      h("label", {}, pinned, " pinned")),
    h("div", {class: "buttons"}, h("button", {onclick: closeDialog}, "Cancel"),
      h("button", {class: "primary", id: "edit-preview", onclick: () => {
        const params = {id: m.id, content: content.value,
                        tags: tags.value.split(",").map(s => s.trim()).filter(Boolean),
                        key: key.value.trim(), pinned: pinned.checked};
        confirmAction("edit", params);
      }}, "Preview")));
}

function linkDialog(m) {
  const other = h("input", {id: "link-to", size: 30, placeholder: "the other memory's id"});
  const type = select("type", ["related", "supports", "contradicts", "derived"], "related", "related");
  openDialog(h("h3", {}, "Link ", short(m.id), " to…"), h("p", {}, other, " ", type),
    h("div", {class: "buttons"}, h("button", {onclick: closeDialog}, "Cancel"),
      h("button", {class: "primary", onclick: () =>
        confirmAction("link", {a: m.id, b: other.value.trim(), type: type.value || "related"})}, "Preview")));
}

// -- A fact's life -----------------------------------------------------------------------

function versionState(v, currentId) {
  if (v.forgotten_at) return "forgotten " + when(v.forgotten_at);
  if (v.superseded_by) return "superseded " + when(v.superseded_at) + (v.reason ? " (" + v.reason + ")" : "");
  if (v.expires_at && Date.parse(v.expires_at) <= Date.now()) return "expired " + when(v.expires_at);
  return v.id === currentId ? "current" : "live";
}

async function viewFact(params) {
  const id = params.get("id"), key = params.get("key"), asOf = params.get("as_of") || "";
  const data = await api("/api/fact" + qs({id, key, as_of: asOf}));
  const asOfInput = h("input", {id: "as-of", type: "datetime-local", step: 1,
                                value: asOf ? localInput(asOf) : ""});
  main.append(h("h2", {}, "A fact's life ", key ? h("span", {class: "muted"}, "key " + key) : null),
    h("form", {class: "filters", onsubmit: (ev) => {
      ev.preventDefault();
      const v = asOfInput.value ? new Date(asOfInput.value).toISOString() : "";
      location.hash = "#/fact" + qs({id: id, key: key, as_of: v});
    }}, h("label", {}, "As of (your local time)", asOfInput),
       h("button", {type: "submit"}, "Show"),
       asOf ? h("span", {class: "muted small", id: "asof-result"}, data.current_at
         ? "live then: " + short(data.current_at) : "no version was live then") : null));
  const tl = h("div", {class: "timeline", id: "timeline"});
  for (const v of data.versions) {
    const cls = ["card", "version"];
    if (v.id === data.current && !v.forgotten_at) cls.push("current");
    if (data.current_at && v.id === data.current_at) cls.push("asof");
    tl.append(h("div", {class: cls.join(" "), "data-id": v.id},
      h("div", {class: "content"}, v.content),
      h("div", {class: "meta"}, h("span", {class: "mono"}, v.id), h("span", {class: "badge"}, v.scope),
        h("span", {}, "agent " + v.agent), v.key ? h("span", {}, "key " + v.key) : null,
        h("span", {}, sourceText(v.source)), v.pinned ? h("span", {class: "badge pinned"}, "pinned") : null,
        h("span", {class: "badge " + (v.superseded_by || v.forgotten_at ? "gone" : "live")}, versionState(v, data.current))),
      h("ul", {class: "events"}, v.events.map(e => h("li", {class: "event"},
        h("b", {}, e.kind), " " + when(e.at) + " — " + (e.who || "") + " · " + (e.device || "") +
        (e.note && e.note.reason ? " · " + e.note.reason : "")))),
      (v.id === data.current && !v.forgotten_at && !v.superseded_by) ? actionsFor(v) : null));
  }
  main.append(tl);
}

// -- Sessions ----------------------------------------------------------------------------

async function viewSessions(params) {
  const list = h("div", {id: "sessions"});
  main.append(h("h2", {}, "Sessions"), list);
  await loadSessions(list, null);
}

async function loadSessions(list, before) {
  const data = await api("/api/sessions" + qs({before}));
  if (!data.sessions.length && !before) list.append(h("p", {class: "muted"}, "No sessions yet."));
  for (const s of data.sessions) {
    list.append(h("div", {class: "card session"},
      h("div", {}, link("#/session?id=" + encodeURIComponent(s.id), s.label || s.id)),
      h("div", {class: "meta"}, h("span", {class: "mono"}, s.id), h("span", {}, "agent " + s.agent),
        h("span", {}, "started " + when(s.started_at)),
        h("span", {class: "badge " + (s.ended_at ? "gone" : "live")}, s.ended_at ? "ended" : "open"),
        s.parent ? h("span", {}, "branch of ", link("#/session?id=" + encodeURIComponent(s.parent), short(s.parent))) : null,
        s.agent_sessions.map(a => h("span", {}, a.agent + " " + short(a.agent_session) + " · " + a.turns + " prompts" + (a.cwd ? " · " + a.cwd : ""))))));
  }
  if (data.next) {
    const b = h("button", {class: "more", onclick: async () => { b.remove(); await loadSessions(list, data.next); }}, "More");
    list.append(b);
  }
}

function treeNode(n, here) {
  return h("li", {},
    n.id === here ? h("b", {}, n.label || n.id) : link("#/session?id=" + encodeURIComponent(n.id), n.label || n.id),
    n.ended ? h("span", {class: "muted small"}, " (ended)") : null,
    (n.checkpoints.length || n.branches.length) ? h("ul", {},
      n.checkpoints.map(c => h("li", {}, "checkpoint " + short(c.id) + " " + (c.label || "") + " · " + when(c.created_at),
        h("ul", {}, n.branches.filter(b => b.from_checkpoint === c.id).map(b => treeNode(b, here))))),
      n.branches.filter(b => !n.checkpoints.some(c => c.id === b.from_checkpoint)).map(b => treeNode(b, here))) : null);
}

async function viewSession(params) {
  const id = params.get("id");
  const d = await api("/api/session" + qs({id}));
  const s = d.session;
  add(main, h("h2", {}, "Session ", s.label || s.id),
    h("dl", {class: "kv"}, h("dt", {}, "id"), h("dd", {class: "mono"}, s.id),
      h("dt", {}, "agent"), h("dd", {}, s.agent), h("dt", {}, "started"), h("dd", {}, when(s.started_at)),
      h("dt", {}, "state"), h("dd", {}, s.ended_at ? "ended " + when(s.ended_at) + " (" + (s.end_reason || "") + ")" : "open"),
      s.summary ? h("dt", {}, "summary") : null, s.summary ? h("dd", {}, s.summary) : null),
    h("div", {class: "actions"},
      link("#/memories" + qs({session: s.id, state: "all"}), "All memories of this session"), " ",
      s.ended_at ? null : h("button", {class: "danger", id: "end-session",
        onclick: () => confirmAction("end_session", {id: s.id})}, "End session")));
  for (const a of d.agent_sessions)
    main.append(h("p", {class: "small muted"}, a.agent + " session " + a.agent_session + (a.cwd ? " in " + a.cwd : "") +
      " · " + a.turns + " prompts" + (a.summary ? " · summary (" + (a.summary_kind || "turns") + "): " + a.summary.slice(0, 300) : "")));
  main.append(h("h3", {}, "Branches and checkpoints"), h("ul", {class: "tree"}, treeNode(d.tree, s.id)));
  if (d.checkpoints.length) {
    main.append(h("div", {}, d.checkpoints.map(c => h("div", {class: "card checkpoint"},
      "checkpoint ", h("span", {class: "mono"}, c.id), " " + (c.label || "") + " · " + when(c.created_at),
      h("div", {class: "actions"}, h("button", {onclick: () => confirmAction("restore", {id: c.id})}, "Restore…"))))));
  }
  if (d.tasks.length) {
    main.append(h("h3", {}, "Tasks"), ...d.tasks.map(t => h("div", {class: "card"},
      (t.label || t.id) + " · " + (t.ended_at ? "ended " + when(t.ended_at) : "open"),
      t.ended_at ? null : h("div", {class: "actions"}, h("button", {class: "danger",
        onclick: () => confirmAction("end_task", {id: t.id})}, "End task")))));
  }
  // Turns, injections and checkpoints, in the order they happened.
  const items = [];
  for (const t of d.turns) items.push({at: t.created_at, el: h("div", {class: "card turn " + ((t.tags || []).includes("user") ? "user" : "assistant")},
    h("div", {class: "small muted"}, ((t.tags || []).filter(x => x !== "turn").join(" ") || "turn") + " · " + when(t.created_at) + " · ", factLink(t.id)),
    h("div", {class: "content"}, t.content))});
  for (const inj of d.injections) items.push({at: inj.at, el: h("div", {class: "card inject"},
    h("div", {class: "small"}, h("b", {}, "db0 injected at " + inj.event), " · " + when(inj.at) + " · " + inj.tokens + " tokens · " + inj.memories.length + " memories"),
    inj.query ? h("div", {class: "small muted"}, "for: " + inj.query.slice(0, 300)) : null,
    h("ul", {class: "small"}, inj.memories.map(m => h("li", {}, factLink(m.id), ": " + m.content))),
    h("details", {}, h("summary", {}, "the text as given"), h("pre", {}, inj.text)))});
  for (const c of d.checkpoints) items.push({at: c.created_at, el: h("div", {class: "notice"}, "checkpoint " + short(c.id) + " " + (c.label || ""))});
  items.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  add(main, h("h3", {}, "Turns, injections and checkpoints"),
    items.length ? h("div", {id: "turns"}, items.map(i => i.el)) : h("p", {class: "muted"}, "No turns captured."),
    d.more_turns ? h("p", {class: "muted small"}, "Only the first turns are shown; the memories view lists them all.") : null);
  add(main, h("h3", {}, "Extracted from this session"),
    d.extracted.length ? h("div", {}, d.extracted.map(m => memoryCard(m, false))) : h("p", {class: "muted"}, "Nothing extracted."),
    d.extracted_partial ? h("p", {class: "muted small"}, "The session spans many other writes: only what was written near its first turns was looked at; filter the memories view by this session for the rest.") : null);
}

// -- Health ------------------------------------------------------------------------------

function kv(obj, keys) {
  const dl = h("dl", {class: "kv"});
  for (const k of keys || Object.keys(obj || {})) {
    if (!obj || obj[k] === undefined || typeof obj[k] === "object") continue;
    dl.append(h("dt", {}, k.replace(/_/g, " ")), h("dd", {}, String(obj[k])));
  }
  return dl;
}

function section(title, obj, body) {
  const out = [h("h3", {}, title)];
  if (obj && obj.error) out.push(errorBox(obj));
  else out.push(body(obj));
  return out;
}

async function viewHealth() {
  const d = await api("/api/health");
  main.append(h("h2", {}, "Health"));
  main.append(...section("Doctor", d.doctor, doc => h("div", {},
    (doc.problems || []).length ? h("div", {}, doc.problems.map(p => h("div", {class: "error"}, p))) : h("p", {class: "badge live", id: "no-problems"}, "no problems"),
    (doc.warnings || []).map(w => h("div", {class: "notice"}, w)),
    kv(doc, ["version", "sqlite", "sqlite_vec", "fts5", "journal_mode", "schema_version", "durability", "quick_check"]))));
  main.append(...section("Store", d.stats, st => h("div", {}, kv(st, ["memories", "rows", "superseded", "forgotten", "expired", "ops", "tags", "database_bytes", "wal_bytes", "device_id"]),
    h("p", {class: "small"}, "by scope: " + Object.entries(st.by_scope || {}).map(([k, v]) => k + " " + v).join(", ")))));
  main.append(...section("Embeddings", d.model, m => h("div", {}, kv(m), m.progress ? kv(m.progress) : null)));
  main.append(...section("Sync", d.sync, s => h("div", {},
    (s.remotes || []).length ? s.remotes.map(r => h("div", {class: "card remote"}, h("b", {}, r.name || "remote"),
      r.last_error ? h("div", {class: "error"}, "last error: " + r.last_error) : null,
      kv(r, ["url", "pending_push", "pushed_total", "pulled_total", "pushed_seq", "pulled_seq", "running"]),
      h("p", {class: "small muted"}, "last sync: " + (r.last_sync_ts ? when(new Date(r.last_sync_ts * 1000).toISOString()) : "never"))))
      : h("p", {class: "muted"}, "No remotes."))));
  main.append(...section("Watched folders", d.watch, w => h("div", {},
    kv(w, ["watches", "pending", "observer_alive", "events"]),
    (w.folders || []).length ? w.folders.map(f => h("div", {class: "card folder"}, h("b", {}, f.path),
      kv(f, ["state", "mode", "files", "sections", "skipped_count", "error_count", "last_scan_at"]),
      (f.skipped || []).length ? h("ul", {class: "small"}, f.skipped.map(x => h("li", {}, "skipped " + x.path + ": " + x.reason))) : null,
      (f.errors || []).length ? h("ul", {class: "small"}, f.errors.map(x => h("li", {class: "error"}, x.path + ": " + x.error))) : null))
      : h("p", {class: "muted"}, "No watched folders."))));
  main.append(...section("Hooks", d.hooks, k => h("div", {},
    kv(k, ["pending", "drained", "set_aside", "agent_sessions", "events"]),
    k.last_error ? h("div", {class: "error"}, "spool: " + k.last_error) : null,
    (k.hook_problems || []).length ? h("div", {}, h("p", {class: "small"}, "Recent hook problems (hooks.log):"),
      h("pre", {class: "doc"}, k.hook_problems.join("\n"))) : h("p", {class: "muted small"}, "No hook problems logged."))));
}

route();
ping();
