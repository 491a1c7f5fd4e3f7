"""python-socketio (the Python client, PyPI) against a demo-app server (docs/demo-app.md).

Run by tests/python_client.rs with SERVER_URL set, in a virtualenv it makes from
requirements.txt. Covers, over websocket and over polling: the handshake auth, events with
mixed arguments, acks, binary both ways, rooms and broadcasts across two clients,
namespaces (`/custom`, and an unknown one refused), a server-side disconnect.
"""

import os
import threading
import unittest

import socketio

URL = os.environ.get("SERVER_URL", "http://127.0.0.1:3000")
WAIT = 5.0


class Waiter:
    """Collects the arguments of one event, thread-safely."""

    def __init__(self):
        self.items = []
        self.cond = threading.Condition()

    def __call__(self, *args):
        with self.cond:
            self.items.append(list(args))
            self.cond.notify_all()

    def wait(self, n=1):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.items) >= n, timeout=WAIT):
                raise AssertionError(f"waited {WAIT}s for {n} events, got {self.items}")
            return self.items[n - 1]


def client(transport, **connect):
    sio = socketio.Client(reconnection=False)
    auth = Waiter()
    sio.on("auth", auth)
    sio.on("auth", auth, namespace="/custom")
    sio.connect(URL, transports=[transport], wait_timeout=WAIT, **connect)
    return sio, auth


class Transports:
    transport = None

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.disconnect()

    def connect(self, **kw):
        sio, auth = client(self.transport, **kw)
        self.clients.append(sio)
        return sio, auth

    def test_transport_and_auth(self):
        sio, auth = self.connect(auth={"token": "abc", "n": [1, 2.5, None]})
        self.assertEqual(sio.transport(), self.transport)
        self.assertEqual(auth.wait(), [{"token": "abc", "n": [1, 2.5, None]}])
        self.assertEqual(len(sio.get_sid()), 20)

    def test_events_and_binary(self):
        sio, _ = self.connect()
        back = Waiter()
        sio.on("message-back", back)
        args = ("text", 42, -1.5, True, None, {"a": [1, {"b": "c"}]}, b"\x00\x01\xff", {"bin": b"xyz"})
        sio.emit("message", args)
        got = back.wait()
        self.assertEqual(got, list(args))
        self.assertIsInstance(got[6], bytes)

    def test_acks(self):
        sio, _ = self.connect()
        self.assertEqual(sio.call("message-with-ack", ("one", 2), timeout=WAIT), ("one", 2))
        self.assertEqual(sio.call("message-with-ack", b"\x07\x08", timeout=WAIT), b"\x07\x08")
        self.assertEqual(sio.call("message-with-ack", {"k": "v"}, timeout=WAIT), {"k": "v"})
        whoami = sio.call("whoami", timeout=WAIT)
        self.assertEqual(whoami["id"], sio.get_sid())

    def test_rooms_and_broadcasts(self):
        a, _ = self.connect()
        b, _ = self.connect()
        news_a, news_b = Waiter(), Waiter()
        a.on("news", news_a)
        b.on("news", news_b)
        self.assertTrue(a.call("join", "room", timeout=WAIT))
        self.assertTrue(b.call("publish", ("room", "news", 1, b"\x02"), timeout=WAIT))
        self.assertEqual(news_a.wait(), [1, b"\x02"])
        self.assertEqual(news_b.items, [], "b is not in the room")
        self.assertTrue(a.call("leave", "room", timeout=WAIT))
        self.assertTrue(b.call("publish", ("room", "news", 2), timeout=WAIT))
        self.assertTrue(a.call("message-with-ack", "sync", timeout=WAIT))
        self.assertEqual(len(news_a.items), 1, news_a.items)

    def test_namespaces(self):
        sio = socketio.Client(reconnection=False)
        self.clients.append(sio)
        auth, back = Waiter(), Waiter()
        sio.on("auth", auth, namespace="/custom")
        sio.on("message-back", back, namespace="/custom")
        sio.connect(URL, namespaces=["/", "/custom"], transports=[self.transport],
                    auth={"who": "py"}, wait_timeout=WAIT)
        self.assertEqual(auth.wait(), [{"who": "py"}])
        sio.emit("message", ("hi", b"\x01"), namespace="/custom")
        self.assertEqual(back.wait(), ["hi", b"\x01"])
        refused = socketio.Client(reconnection=False)
        why = Waiter()
        refused.on("connect_error", why, namespace="/nope")
        with self.assertRaises(socketio.exceptions.ConnectionError):
            refused.connect(URL, namespaces=["/nope"], transports=[self.transport], wait_timeout=WAIT)
        self.assertIn(why.wait(), [[{"message": "Invalid namespace"}], ["Invalid namespace"]])
        refused.disconnect()

    def test_server_disconnect(self):
        sio, _ = self.connect()
        gone = threading.Event()
        sio.on("disconnect", lambda *reason: gone.set())
        sio.emit("disconnect-me")
        self.assertTrue(gone.wait(WAIT), "no disconnect event")


class WebSocket(Transports, unittest.TestCase):
    transport = "websocket"


class Polling(Transports, unittest.TestCase):
    transport = "polling"


if __name__ == "__main__":
    unittest.main(verbosity=2)
