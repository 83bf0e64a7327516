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
let account = null; // the nick of the account the session is logged in to (null: a guest)
const topics = {}; // room -> { text, by }: the topics of the rooms the page is told of

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

function text(value) {
  return document.createTextNode(value);
}

function clock(when) {
  // HH:MM, local; with the day before it when it is not today (a message kept for its
  // owner's next login may be days old)
  const hhmm = when.toTimeString().slice(0, 5);
  if (when.toDateString() === new Date().toDateString()) return hhmm;
  const two = (n) => String(n).padStart(2, "0");
  return `${when.getFullYear()}-${two(when.getMonth() + 1)}-${two(when.getDate())} ${hhmm}`;
}

function add(cls, ...parts) {
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const li = document.createElement("li");
  li.className = earlier ? cls + " history" : cls;
  const when = stamp || new Date();
  const time = document.createElement("time");
  time.className = "time";
  time.dateTime = when.toISOString();
  time.title = when.toLocaleString();
  time.textContent = clock(when) + " ";
  li.append(time, ...parts);
  log.append(li);
  while (log.children.length > 2000) log.firstElementChild.remove();
  if (atBottom) li.scrollIntoView({ block: "end" });
}

function isMe(nick) {
  // nicks are unique whatever their case (the server's nick_key)
  return typeof nick === "string" && nick.toLowerCase() === me.toLowerCase();
}

function setWhere() {
  if (room) saved.setItem("triosock.room", room);
  $("me").textContent = me;
  $("room").textContent = room;
  const topic = topics[room];
  $("topic").hidden = !topic;
  $("topic").textContent = topic ? "topic: " + topic.text : "";
  $("topic").title = topic ? `set by ${topic.by}` : "";
  if (document.activeElement !== $("nick")) $("nick").value = me;
  for (const li of $("rooms").children) li.classList.toggle("current", li.dataset.room === room);
}

// How a TCP user sees an operator's action (render_line in _sansio/chat/_events.py):
// what follows "* BY ". " (TEXT)" is added where the form has no {text} and there is one.
const MODERATION = {
  claim: "claimed {room}: its founder",
  op: "made {target} an operator of {room}",
  deop: "removed {target} as operator of {room}",
  topic: "set the topic of {room}: {text}",
  kick: "kicked {target}",
  ban: "banned {target}",
  unban: "unbanned {target}",
  mute: "muted {target}",
  unmute: "unmuted {target}",
  mode: "set {room} {target}",
  kill: "disconnected {target}",
};

function moderationWords(ev) {
  const field = (name) => (typeof ev[name] === "string" ? ev[name] : "");
  const [action, target, words] = [field("action"), field("target"), field("text")];
  if (action === "topic" && !words) return `cleared the topic of ${field("room")}`;
  if (action === "mode") {
    return `set ${field("room")} ${target} (` +
      (target === "+m" ? "only operators speak" : "everyone speaks") + ")";
  }
  if (!Object.hasOwn(MODERATION, action)) return `${action} ${target} ${words}`.trimEnd();
  const form = MODERATION[action];
  const line = form.replace(/\{(room|target|text)\}/g, (_, name) => field(name));
  return words && !form.includes("{text}") ? `${line} (${words})` : line;
}

// What the page learns from the server's notices. The protocol has no event that says
// the session is logged in, nor a room's topic on entering it: the account service's
// and the operators' words are read (they are the same for every transport).
const HEARD = [
  [/^welcome to triosock chat, /, () => setAccount(null)], // a new session: a guest
  [/^welcome back, /, () => setAccount(saved.getItem("triosock.account"))], // resumed
  [/^you are logged in as (\S+)(?: already)?$/, (m) => { me = m[1]; setAccount(m[1]); }],
  [/^(\S+) is yours: log in with /, (m) => setAccount(m[1])],
  [/^(\S+) is registered to you already$/, (m) => setAccount(m[1])],
  [/^logged out: you are (\S+)$/, (m) => { me = m[1]; setAccount(null); }],
  [/^you are not logged in$/, () => setAccount(null)],
  [/^topic of (#\S+): (.*) \(set by (\S+)\)$/s, (m) => {
    topics[m[1]] = { text: m[2], by: m[3] };
  }],
  [/^(#\S+) has no topic$/, (m) => { delete topics[m[1]]; }],
];

function heard(notice) {
  for (const [pattern, then] of HEARD) {
    const found = pattern.exec(notice);
    if (found) {
      then(found);
      break;
    }
  }
  if (registering) forgetRegistering(); // the nick it needed was refused: this says why
  if (asked) { // the answer to the account form: shown beside it too
    asked = false;
    $("account-answer").textContent = notice;
  }
}

function setAccount(nick) {
  account = nick || null;
  if (account) saved.setItem("triosock.account", account);
  else saved.removeItem("triosock.account");
  $("login-form").hidden = account !== null;
  $("account-state").hidden = account === null;
  $("account-nick").textContent = account || "";
}

function show(ev) {
  stamp = typeof ev.time === "number" && ev.time > 0 ? new Date(ev.time) : null;
  earlier = ev.history === true;
  switch (ev.type) {
    case "history": // the room's earlier lines follow, each with "history": true
      if (String(ev.room).startsWith("#")) {
        add("notice", text(`-!- ${ev.count} earlier line${ev.count === 1 ? "" : "s"} of ${ev.room}`));
      } else { // not a room: the direct messages kept for an account while it was away
        add("notice", text(`-!- ${ev.room}: ${ev.count} message${ev.count === 1 ? "" : "s"}`));
      }
      break;
    case "history_end":
      if (String(ev.room).startsWith("#")) {
        add("notice", text(`-!- end of earlier lines of ${ev.room}` +
                           (ev.more ? "; /history N shows more" : "")));
      } else {
        add("notice", text(`-!- end of ${ev.room}`));
      }
      break;
    case "hello":
      me = ev.nick;
      if (room && room !== ev.room) delete topics[room]; // told again on entering it
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
      if (isMe(ev.recipient)) {
        add("direct", text("[dm from "), span("nick", ev.sender), text("] " + ev.text));
      } else {
        add("direct", text("[dm to "), span("nick", ev.recipient), text("] " + ev.text));
      }
      break;
    case "joined":
      if (isMe(ev.nick)) {
        if (room && room !== ev.room) delete topics[room]; // told again on entering it
        room = ev.room;
        setWhere();
      }
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
      if (isMe(ev.old)) { me = ev.new; setWhere(); }
      add("event", text(`* ${ev.old} is now known as ${ev.new}`));
      if (registering && isMe(ev.new) &&
          ev.new.toLowerCase() === registering.nick.toLowerCase()) {
        send({ type: "register", password: registering.password }); // the nick held now
        forgetRegistering();
      }
      break;
    case "notice":
      heard(String(ev.text));
      add("notice", text("-!- " + ev.text));
      setWhere(); // a refused /nick: the box shows the nick you have
      break;
    case "moderation":
      if (ev.action === "topic") {
        if (ev.text) topics[ev.room] = { text: ev.text, by: ev.by };
        else delete topics[ev.room];
        setWhere();
      }
      add("event moderation", text("* "), span("nick", ev.by), text(" " + moderationWords(ev)));
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
      saved.removeItem("triosock.account");
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
// The account form. Logging in is one event; registering a nick is two: the nick first
// (unless it is held already), then, once the page sees it is the session's, the
// register event (the server registers the nick held: were the nick refused, another
// would be). The password stays in the page only until it is sent.
let asked = false; // an account request was sent: the next notice answers it
let registering = null; // { nick, password }: waiting for the rename to nick
let registeringTimer = null;

function forgetRegistering() {
  registering = null;
  clearTimeout(registeringTimer);
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!ws || ws.readyState !== WebSocket.OPEN) return; // kept until it can be sent
  const nick = $("login-nick").value.trim();
  const password = $("login-password").value;
  if (!nick || !password) return;
  $("login-password").value = "";
  forgetRegistering();
  asked = true;
  if (!e.submitter || e.submitter.value !== "register") {
    $("account-answer").textContent = "logging in…";
    send({ type: "login", nick, password });
  } else if (nick === me) {
    $("account-answer").textContent = "registering…";
    send({ type: "register", password });
  } else {
    $("account-answer").textContent = `registering: asking for ${nick} first…`;
    registering = { nick, password };
    registeringTimer = setTimeout(forgetRegistering, 30000); // no answer: never sent
    send({ type: "nick", nick });
  }
});
$("logout").addEventListener("click", () => {
  asked = true;
  $("account-answer").textContent = "logging out…";
  send({ type: "logout" });
});
$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("join").value.trim();
  if (name) send({ type: "join", room: name });
  $("join").value = "";
});
setInterval(refreshRooms, 10000);
connect();
