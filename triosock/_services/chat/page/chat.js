// The triosock chat page. Every message from the server holds JSON lines, one event each
// (see the protocol in the README); what users typed is shown with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const log = $("log");
let ws = null;
let me = "";
let room = "";

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
  li.className = cls;
  const now = new Date();
  li.append(span("time", now.toTimeString().slice(0, 5) + " "), ...parts);
  log.append(li);
  while (log.children.length > 2000) log.firstElementChild.remove();
  if (atBottom) li.scrollIntoView({ block: "end" });
}

function setWhere() {
  $("me").textContent = me;
  $("room").textContent = room;
  if (document.activeElement !== $("nick")) $("nick").value = me;
  for (const li of $("rooms").children) li.classList.toggle("current", li.dataset.room === room);
}

function show(ev) {
  switch (ev.type) {
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

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  ws = new WebSocket(scheme + location.host + "/ws");
  ws.addEventListener("open", () => {
    $("status").textContent = "connected";
    $("status").classList.remove("down");
  });
  ws.addEventListener("message", (e) => {
    for (const line of String(e.data).split("\n")) {
      if (line) show(JSON.parse(line));
    }
  });
  let opened = false;
  ws.addEventListener("open", () => { opened = true; });
  ws.addEventListener("close", (e) => {
    const why = e.reason ? `${e.code}: ${e.reason}` : String(e.code);
    $("status").textContent = `disconnected (${why})`;
    $("status").classList.add("down");
    if (opened) {
      add("closing", text(`-!- disconnected (${why}); reload the page to come back`));
    } else {
      // A refused handshake (403) is invisible to scripts: say what it usually means.
      add("closing", text("-!- could not connect. If you opened this page by a name other " +
        "than its IP address or localhost, the server must allow that origin " +
        `(chat serve --web-origin ${location.origin}); otherwise it is down.`));
    }
    for (const field of document.querySelectorAll("input, button")) field.disabled = true;
    $("say").placeholder = "disconnected: reload the page to come back";
    $("me").textContent = "(nobody)";
    $("rooms").replaceChildren();
  });
}

$("say-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("say").value;
  if (text.trim()) send({ type: "line", text });
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
