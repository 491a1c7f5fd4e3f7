// The lobby: join a room, chat in it, and watch its member count and message rate. It
// speaks the demo app of `shardcast serve` (docs/demo-app.md), so it works against any
// server that implements it: `join` (room) + ack, `publish` (room, event, ...args) to the
// room, `fetch-sockets` (room) + ack for the members.
//
// Query parameters: ?name=ann&room=lobby joins at once; ?transport=polling (or websocket)
// pins the transport (default: polling, then the upgrade to WebSocket).
"use strict";

const params = new URLSearchParams(location.search);
const transport = params.get("transport");
const socket = io({ transports: transport ? [transport] : ["polling", "websocket"] });

const $ = (id) => document.getElementById(id);
const state = { room: null, name: null, received: [] };

function showStatus() {
  $("status").textContent = socket.connected ? "connected" : "disconnected";
  $("status").className = `status ${socket.connected ? "on" : "off"}`;
  $("transport").textContent = socket.connected ? socket.io.engine.transport.name : "-";
}

function addLine(from, text) {
  const li = document.createElement("li");
  if (from) {
    const b = document.createElement("span");
    b.className = "from";
    b.textContent = from;
    li.append(b, document.createTextNode(text));
  } else {
    li.className = "system";
    li.textContent = text;
  }
  $("messages").append(li);
  $("messages").scrollTop = $("messages").scrollHeight;
}

async function join(name, room) {
  const ok = await socket.timeout(5000).emitWithAck("join", room);
  if (ok !== true) throw new Error(`join refused: ${ok}`);
  state.name = name;
  state.room = room;
  // A reload comes back to the same room under the same name.
  sessionStorage.setItem("lobby", JSON.stringify({ name, room }));
  $("room-name").textContent = room;
  $("lobby").hidden = false;
  $("join-form").hidden = true;
  socket.emit("publish", room, "presence", { name, joined: true });
  refreshMembers();
}

async function refreshMembers() {
  if (!state.room || !socket.connected) return;
  try {
    const ids = await socket.timeout(3000).emitWithAck("fetch-sockets", state.room);
    $("members").textContent = String(ids.length);
  } catch {
    // a timeout: the next tick tries again
  }
}

// Messages per second over the last 5 s, from what this page received.
function showRate() {
  const now = Date.now();
  state.received = state.received.filter((t) => now - t < 5000);
  $("rate").textContent = (state.received.length / 5).toFixed(1);
}

socket.on("connect", async () => {
  showStatus();
  const saved = JSON.parse(sessionStorage.getItem("lobby") || "null");
  const name = params.get("name") || saved?.name;
  const room = params.get("room") || saved?.room;
  if (name) $("name").value = name;
  if (room) $("room").value = room;
  // Joined before (or told to by the URL): join again on every (re)connection.
  if ((state.room || saved || params.get("name")) && name && room) {
    await join(name, room).catch((e) => addLine(null, e.message));
  }
});
socket.on("disconnect", showStatus);
// Each (re)connection has an engine of its own: watch each for its upgrade.
socket.io.on("open", () => socket.io.engine.on("upgrade", showStatus));
socket.io.engine?.on("upgrade", showStatus);

socket.on("chat", (msg) => {
  state.received.push(Date.now());
  addLine(msg.name, msg.text);
});
socket.on("presence", (p) => {
  addLine(null, `${p.name} ${p.joined ? "joined" : "left"}`);
  refreshMembers();
});

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  join($("name").value.trim(), $("room").value.trim()).catch((err) => addLine(null, err.message));
});
$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !state.room) return;
  socket.emit("publish", state.room, "chat", { name: state.name, text });
  $("text").value = "";
});

setInterval(refreshMembers, 1000);
setInterval(showRate, 500);
