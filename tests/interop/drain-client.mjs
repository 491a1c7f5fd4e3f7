// Run by tests/drain.rs: the official client (reconnection on, websocket and polling) at URL
// (argv[2]). Prints "connected" once both are in, then for each the reason of its
// disconnect when the server drains ("disconnect <transport> <reason>"), then "reconnected"
// once both are back (the test has started a server on the same port meanwhile).
import { io } from "socket.io-client";

const url = process.argv[2];
const clients = ["websocket", "polling"].map((t) =>
  io(url, { transports: [t], forceNew: true, reconnectionDelay: 200, reconnectionDelayMax: 500, timeout: 3000 }),
);
let connects = 0;
let disconnects = 0;
for (const [i, c] of clients.entries()) {
  const name = i === 0 ? "websocket" : "polling";
  c.on("connect", () => {
    connects++;
    if (connects === 2) console.log("connected");
    if (connects === 4) {
      console.log("reconnected");
      for (const x of clients) x.disconnect();
      process.exit(0);
    }
  });
  c.on("disconnect", (reason) => {
    disconnects++;
    console.log(`disconnect ${name} ${reason}`);
  });
}
setTimeout(() => {
  console.error(`timed out: ${connects} connects, ${disconnects} disconnects`);
  process.exit(1);
}, 30000);
