// The triosock chat page. Every message from the server holds JSON lines, one event each
// (see the protocol in the README); what users typed is shown with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const log = $("log");
let ws = null;
let me = "";
let room = "";
let stamp = null; // the time of the event being shown (lines said carry theirs)
let earlier = false; // whether it is an earlier line, shown again from the history

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

function text(value) {
  return document.createTextNode(value);
}

function add(cls, ...parts) {
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const li = document.createElement("li");
  li.className = earlier ? cls + " history" : cls;
  const when = stamp || new Date();
  li.append(span("time", when.toTimeString().slice(0, 5) + " "), ...parts);
  log.append(li);
  while (log.children.length > 2000) log.firstElementChild.remove();
  if (atBottom) li.scrollIntoView({ block: "end" });
}

function setWhere() {
  if (room) saved.setItem("triosock.room", room);
  $("me").textContent = me;
  $("room").textContent = room;
  if (document.activeElement !== $("nick")) $("nick").value = me;
  for (const li of $("rooms").children) li.classList.toggle("current", li.dataset.room === room);
}

function show(ev) {
  stamp = typeof ev.time === "number" && ev.time > 0 ? new Date(ev.time) : null;
  earlier = ev.history === true;
  switch (ev.type) {
    case "history": // the room's earlier lines follow, each with "history": true
      add("notice", text(`-!- ${ev.count} earlier line${ev.count === 1 ? "" : "s"} of ${ev.room}`));
      break;
    case "history_end":
      add("notice", text(`-!- end of earlier lines of ${ev.room}` +
                         (ev.more ? "; /history N shows more" : "")));
      break;
    case "hello":
      me = ev.nick;
      room = ev.room;
      setWhere();
      refreshRooms();
      break;
    case "message":
      add(ev.sender === me ? "message mine" : "message", span("roomtag", `[${ev.room}] `),
          span("nick", ev.sender), text(": " + ev.text));
      break;
    case "action":
      add("message action", span("roomtag", `[${ev.room}] `), text("* "),
          span("nick", ev.sender), text(" " + ev.text));
      break;
    case "direct":
      if (ev.recipient === me) {
        add("direct", text("[dm from "), span("nick", ev.sender), text("] " + ev.text));
      } else {
        add("direct", text("[dm to "), span("nick", ev.recipient), text("] " + ev.text));
      }
      break;
    case "joined":
      if (ev.nick === me) { room = ev.room; setWhere(); }
      add("event", text(`* ${ev.nick} joined ${ev.room}`));
      refreshRooms();
      break;
    case "left":
      add("event", text(`* ${ev.nick} left ${ev.room}`));
      refreshRooms();
      break;
    case "crowd": // a crowded room: how many came and went, not a line each
      add("event", text(`* ${ev.joined} joined, ${ev.left} left ${ev.room}`));
      refreshRooms();
      break;
    case "nick":
      if (ev.old === me) { me = ev.new; setWhere(); }
      add("event", text(`* ${ev.old} is now known as ${ev.new}`));
      break;
    case "notice":
      add("notice", text("-!- " + ev.text));
      setWhere(); // a refused /nick: the box shows the nick you have
      break;
    case "closing":
      add("closing", text("-!- server closing" + (ev.text ? ": " + ev.text : "")));
      break;
  }
}

let roomsTimer = null;
function refreshRooms() {
  clearTimeout(roomsTimer);
  roomsTimer = setTimeout(async () => {
    try {
      const answer = await fetch("/rooms", { cache: "no-store" });
      const { rooms } = await answer.json();
      const list = $("rooms");
      list.replaceChildren();
      for (const [name, count] of Object.entries(rooms)) {
        const li = document.createElement("li");
        li.dataset.room = name;
        const go = document.createElement("button");
        go.type = "button";
        go.title = `join ${name}`;
        go.append(text(name), span("count", ` ${count}`));
        go.addEventListener("click", () => send({ type: "join", room: name }));
        li.append(go);
        list.append(li);
      }
      setWhere();
    } catch (e) { /* the next event tries again */ }
  }, 150);
}

function send(event) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(event));
}

// Resuming. The server keeps a session whose connection dropped for a while (its
// resume window); the page keeps its token and the last id it saw of its room and of
// its direct messages in sessionStorage (this tab only), and asks for the session back
// on every new connection: after a reload, a server restart or a lost network. A page
// that starts with an empty log asks for the 20 lines before its last ids too.
const saved = window.sessionStorage;
const shown = {}; // key ("#room" or "direct") -> the newest id shown in this page
let lastIds = {}; // key -> the newest id seen, also in sessionStorage
try { lastIds = JSON.parse(saved.getItem("triosock.last") || "{}") || {}; } catch (e) { lastIds = {}; }
let attempt = 0;
let leaving = false; // the user typed /quit: no reconnecting

function keyOf(ev) {
  return ev.type === "direct" ? "direct" : ev.room;
}

function fresh(ev) {
  // Whether a line said is new to this page (a resume after a reconnect may repeat none,
  // but an id is never shown twice); remember it as seen.
  if (typeof ev.id !== "number" || ev.id < 1) return true;
  const key = keyOf(ev);
  // earlier lines are shown as asked (a /history may repeat what the page shows)
  if (ev.history !== true && ev.id <= (shown[key] || 0)) return false;
  shown[key] = Math.max(ev.id, shown[key] || 0);
  lastIds[key] = Math.max(ev.id, lastIds[key] || 0);
  saved.setItem("triosock.last", JSON.stringify(lastIds));
  return true;
}

function resumeRequest() {
  const token = saved.getItem("triosock.token");
  if (!token) return null;
  const after = {};
  for (const key of [room || saved.getItem("triosock.room"), "direct"]) {
    const id = lastIds[key];
    if (!key || typeof id !== "number") continue;
    // an empty page (a reload) wants some context before what it missed
    after[key] = Object.keys(shown).length ? id : Math.max(0, id - 20);
  }
  const request = { type: "resume", token, after };
  const epoch = saved.getItem("triosock.epoch");
  if (epoch) request.epoch = epoch;
  return request;
}

function setStatus(textValue, down) {
  $("status").textContent = textValue;
  $("status").classList.toggle("down", down);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  // "resume=1": the server waits for our resume (2 s at most) before it greets us
  const resuming = saved.getItem("triosock.token") ? "?resume=1" : "";
  ws = new WebSocket(scheme + location.host + "/ws" + resuming);
  let opened = false;
  ws.addEventListener("open", () => {
    opened = true;
    attempt = 0;
    const request = resumeRequest();
    if (request) ws.send(JSON.stringify(request));
    setStatus("connected", false);
    for (const field of document.querySelectorAll("input, button")) field.disabled = false;
    $("say").placeholder = "say something, or /help";
  });
  ws.addEventListener("message", (e) => {
    for (const line of String(e.data).split("\n")) {
      if (!line) continue;
      const ev = JSON.parse(line);
      if (ev.type === "hello" && ev.token) {
        if (saved.getItem("triosock.epoch") !== ev.epoch) { // ids of another history
          lastIds = {};
          for (const key of Object.keys(shown)) delete shown[key];
        }
        saved.setItem("triosock.token", ev.token);
        saved.setItem("triosock.epoch", ev.epoch || "");
      }
      if (ev.type === "epoch") { // the history began again: the ids seen mean nothing
        lastIds = {};
        for (const key of Object.keys(shown)) delete shown[key];
        saved.setItem("triosock.last", "{}");
        saved.setItem("triosock.epoch", ev.epoch || "");
        continue; // the notice that follows says it
      }
      if (fresh(ev)) show(ev);
    }
  });
  ws.addEventListener("close", (e) => {
    const why = e.reason ? `${e.code}: ${e.reason}` : String(e.code);
    if (leaving || e.code === 1000) {
      saved.removeItem("triosock.token"); // the session is over
      setStatus(`disconnected (${why})`, true);
      add("closing", text(`-!- disconnected (${why}); reload the page to come back`));
      for (const field of document.querySelectorAll("input, button")) field.disabled = true;
      $("say").placeholder = "disconnected: reload the page to come back";
      $("me").textContent = "(nobody)";
      $("rooms").replaceChildren();
      return;
    }
    if (!opened && attempt === 0) {
      // A refused handshake (403) is invisible to scripts: say what it usually means.
      add("closing", text("-!- could not connect. If you opened this page by a name other " +
        "than its IP address or localhost, the server must allow that origin " +
        `(chat serve --web-origin ${location.origin}); otherwise it is down.`));
    }
    // Reconnect by itself: 0.5 s, then twice as long each time up to 30 s, jittered so
    // that a thousand pages do not come back at once. What the user typed stays.
    const delay = Math.min(30, 0.5 * 2 ** attempt) * (0.5 + Math.random());
    attempt += 1;
    const until = Date.now() + delay * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setStatus(navigator.onLine === false ? "offline: waiting for the network"
        : `reconnecting in ${left} s (${why})`, true);
    };
    tick();
    const ticker = setInterval(tick, 1000);
    setTimeout(() => { clearInterval(ticker); setStatus("reconnecting…", true); connect(); },
      delay * 1000);
  });
}

$("say-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("say").value;
  if (!ws || ws.readyState !== WebSocket.OPEN) return; // kept until it can be sent
  if (text.trim()) send({ type: "line", text });
  if (/^\/quit\b/i.test(text.trim())) leaving = true;
  $("say").value = "";
});
$("nick-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const nick = $("nick").value.trim();
  if (nick && nick !== me) send({ type: "nick", nick });
  $("say").focus(); // back to talking; the box shows the nick you get
  setWhere();
});
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("join").value.trim();
  if (name) send({ type: "join", room: name });
  $("join").value = "";
});
setInterval(refreshRooms, 10000);
connect();
