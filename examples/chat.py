#!/usr/bin/env python3
"""
A chat room on a multi_channel: the server relays each message to everyone
but its author; clients join and leave.

Run the scripted demo (a server and three clients in one process, printing
the conversation)::

    python examples/chat.py            # or: python examples/chat.py demo

Or chat for real, in several terminals (each client reads lines from stdin;
end it with Ctrl-D)::

    python examples/chat.py server --port 8700
    python examples/chat.py client --port 8700 --name alice
    python examples/chat.py client --port 8700 --name bob

The server listens with C{multi_channel.channel_on}; each client connects
with C{channel.channel_to}.  Items are JSON objects:

    - client to server: C{{"join": name}}, C{{"say": text}}; leaving is
      closing the connection.
    - server to client: C{{"welcome": [names]}}, C{{"joined": name}},
      C{{"from": name, "text": text}}, C{{"left": name}}.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

try:
    from tsyncp_tx import channel, multi_channel
    from tsyncp_tx.errors import ChannelClosed, DecodeError
except ImportError:  # pragma: no cover - a helpful message beats a traceback
    sys.exit("tsyncp_tx is not importable: run `pip install .` in the checkout first")

HOST = "127.0.0.1"


def describe(address: Tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


# Server ----------------------------------------------------------------------


class ChatServer:
    """
    Relays every message to everyone but its author.

    @ivar names: Chatter names by peer address, for those who joined.
    """

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log
        self.names: Dict[Any, str] = {}
        self.channel: Optional[multi_channel.MultiChannel] = None
        # Peers gone while their last items may still be queued.
        self._departures: List[Any] = []
        self._idle = False  # serve() waits on an empty queue

    async def start(self, port: int) -> Tuple[str, int]:
        """
        Listen on 127.0.0.1; return the bound C{(host, port)}.
        """
        self.channel = await multi_channel.channel_on(
            (HOST, port),
            on_disconnect=self._disconnected,
            # A client that stops reading is dropped instead of stalling the room.
            slow_receiver="disconnect",
        )
        return self.channel.local_address  # type: ignore[no-any-return]

    async def serve(self) -> None:
        """
        Handle messages until the channel is closed.
        """
        assert self.channel is not None
        while True:
            # Peers reported gone before this batch is taken had all their
            # items queued by then, so those items are in this batch (or
            # were handled before): announce them after it.
            due, self._departures = self._departures, []
            batch = self.channel.recv_many(with_addr=True)
            if not batch.called:  # nothing queued: nothing of theirs is left
                self._announce(due)
                due = []
                self._idle = True
            try:
                items = await batch
            except ChannelClosed:
                return
            except DecodeError as e:
                self.log(f"ignoring undecodable message: {e}")
                self._departures[:0] = due
                continue
            finally:
                self._idle = False
            for item, address in items:
                if isinstance(item, dict):
                    await self._handle(item, address)
            self._announce(due)

    async def _handle(self, item: Dict[str, Any], address: Any) -> None:
        assert self.channel is not None
        others = lambda peer: peer != address  # noqa: E731 - everyone but the author
        if isinstance(item.get("join"), str) and address not in self.names:
            name = item["join"]
            present = [self.names[a] for a in self.channel.addresses if a in self.names]
            self.names[address] = name
            self.log(f"{name} joined from {describe(address)}")
            # to=: only the newcomer gets the welcome; filter=: everyone else hears of it.
            await self.channel.send({"welcome": present}, to=[address])
            await self.channel.send({"joined": name}, filter=others)
        elif isinstance(item.get("say"), str) and address in self.names:
            name = self.names[address]
            count = await self.channel.send({"from": name, "text": item["say"]}, filter=others)
            self.log(f"relayed {name}'s message to {count} other(s)")

    def _disconnected(self, address: Any, reason: Failure) -> None:
        # on_disconnect runs as soon as the connection ends, but the items
        # that client sent before leaving may still wait in the receive
        # queue (all of them are queued by now: TCP delivers the data before
        # the close).  So "bob left" goes out only after bob's last words.
        if self.channel is None or self.channel.closed:
            return
        if self._idle:  # the queue is empty: everything of theirs was handled
            self._announce([address])
        else:
            self._departures.append(address)

    def _announce(self, departed: List[Any]) -> None:
        assert self.channel is not None
        for address in departed:
            name = self.names.pop(address, None)
            if name is not None:
                self.log(f"{name} left")
                self.channel.send({"left": name}).addErrback(lambda f: None)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()


# Client ----------------------------------------------------------------------


def render(item: Any) -> str:
    """
    One server item as a line of the conversation.
    """
    if not isinstance(item, dict):
        return f"? {item!r}"
    if "from" in item:
        return f"<{item['from']}> {item['text']}"
    if "joined" in item:
        return f"* {item['joined']} joined"
    if "left" in item:
        return f"* {item['left']} left"
    if "welcome" in item:
        present = ", ".join(item["welcome"]) or "nobody else yet"
        return f"* welcome! in the room: {present}"
    return f"? {item!r}"


class ChatClient:
    """
    One chatter: joins, says things, shows what the others say.

    @ivar seen: Every line shown so far (the welcome included).
    """

    def __init__(self, name: str, show: Callable[[str], None]) -> None:
        self.name = name
        self.show = show
        self.seen: List[str] = []
        self.channel: Optional[channel.Channel] = None
        self._expected: List[Tuple[str, Deferred[None]]] = []

    async def join(self, port: int) -> None:
        """
        Connect (retrying while the server starts), join, wait for the
        welcome.
        """
        self.channel = await channel.channel_to((HOST, port), retry=(0.2, 25))
        await self.channel.send({"join": self.name})
        self._shown(render(await self.channel.recv(timeout=10)))

    def say(self, text: str) -> Deferred[None]:
        assert self.channel is not None
        return self.channel.send({"say": text})

    async def listen(self) -> None:
        """
        Show every item until the connection or the channel is closed.
        """
        assert self.channel is not None
        async for item in self.channel:
            self._shown(render(item))

    async def leave(self) -> None:
        # close() flushes what was sent; the server sees the connection end.
        if self.channel is not None:
            await self.channel.close()

    def _shown(self, line: str) -> None:
        self.seen.append(line)
        self.show(line)
        for entry in [e for e in self._expected if e[0] == line]:
            self._expected.remove(entry)
            entry[1].callback(None)

    def expect(self, line: str, reactor: Any, timeout: float = 10.0) -> Deferred[None]:
        """
        A Deferred firing once C{line} has been shown (for scripts).
        """
        if line in self.seen:
            return defer.succeed(None)
        d: Deferred[None] = Deferred()
        self._expected.append((line, d))
        return d.addTimeout(timeout, reactor)


class _Lines(LineReceiver):
    delimiter = b"\n"

    def __init__(self, on_line: Callable[[str], Any]) -> None:
        self.on_line = on_line
        self.closed: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text:
            self.on_line(text)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed.callback(None)


async def run_client(reactor: Any, port: int, name: str) -> None:
    """
    Chat from stdin until it ends (Ctrl-D) or the server goes away.
    """
    from twisted.internet.stdio import StandardIO

    client = ChatClient(name, show=lambda line: print(line, flush=True))
    await client.join(port)
    # Ctrl-C: leave cleanly (the reactor waits for the returned Deferred).
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(client.leave()))
    sends: List[Deferred[None]] = []
    lines = _Lines(lambda text: sends.append(client.say(text)))
    stdio = StandardIO(lines, reactor=reactor)
    # StandardIO makes stdout non-blocking: write through it from now on.
    client.show = lambda line: stdio.write(line.encode("utf-8") + b"\n")

    async def until_eof() -> None:
        await lines.closed
        await defer.DeferredList(sends)  # the last lines go out before leaving
        await client.leave()

    eof = Deferred.fromCoroutine(until_eof())
    await client.listen()
    if not eof.called:
        client.show("* the server closed the connection")
        stdio.loseConnection()
    await eof


async def run_server(reactor: Any, port: int) -> None:
    """
    Serve until interrupted.
    """
    server = ChatServer(log=lambda line: print(line, flush=True))
    host, bound = await server.start(port)
    print(f"chat server listening on {host}:{bound}", flush=True)
    # Ctrl-C: close the channel (the reactor waits for the returned Deferred).
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(server.close()))
    await server.serve()


# Demo ------------------------------------------------------------------------


async def run_demo(reactor: Any) -> None:
    """
    A server and three scripted clients; checks that every message reached
    everyone but its author.
    """
    server = ChatServer(log=lambda line: print(f"  server | {line}"))
    _, port = await server.start(0)
    print(f"chat server on {HOST}:{port}")
    serving = Deferred.fromCoroutine(server.serve())
    names = ("alice", "bob", "carol")

    def screen(name: str) -> Callable[[str], None]:
        return lambda line: print(f"{name:>7} | {line}")

    clients = {name: ChatClient(name, show=screen(name)) for name in names}
    listening: List[Deferred[None]] = []
    try:
        for name in names:
            print(f"{name:>7} joins")
            await clients[name].join(port)
            listening.append(Deferred.fromCoroutine(clients[name].listen()))
            for other in names[: names.index(name)]:
                await clients[other].expect(f"* {name} joined", reactor)

        async def say(author: str, text: str) -> None:
            print(f"{author:>7} > {text}")
            await clients[author].say(text)
            for other in names:
                if other != author and not clients[other].channel.closed:  # type: ignore[union-attr]
                    await clients[other].expect(f"<{author}> {text}", reactor)

        await say("alice", "hi everyone")
        await say("bob", "hello alice!")
        await say("carol", "hi both, I can't stay long")
        await say("carol", "bye!")
        print("  carol leaves")
        await clients["carol"].leave()
        await clients["alice"].expect("* carol left", reactor)
        await clients["bob"].expect("* carol left", reactor)
        await say("alice", "just us now, bob")
        print("  alice leaves")
        await clients["alice"].leave()
        await clients["bob"].expect("* alice left", reactor)
        print("    bob leaves")
        await clients["bob"].leave()
        for _ in range(100):  # let the server notice (at most 5 seconds)
            if not server.names:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
    finally:
        for client in clients.values():
            await client.leave()
        await defer.DeferredList(listening)
        await server.close()
        await serving

    expected = {
        "alice": ["* welcome! in the room: nobody else yet", "* bob joined", "* carol joined",
                  "<bob> hello alice!", "<carol> hi both, I can't stay long", "<carol> bye!",
                  "* carol left"],
        "bob": ["* welcome! in the room: alice", "* carol joined", "<alice> hi everyone",
                "<carol> hi both, I can't stay long", "<carol> bye!", "* carol left",
                "<alice> just us now, bob", "* alice left"],
        "carol": ["* welcome! in the room: alice, bob", "<alice> hi everyone", "<bob> hello alice!"],
    }
    ok = True
    for name in names:
        if clients[name].seen != expected[name]:
            ok = False
            print(f"{name} saw {clients[name].seen}, expected {expected[name]}")
    if server.names:
        ok = False
        print(f"the server still lists {sorted(server.names.values())}")
    if not ok:
        raise SystemExit(1)
    print("conversation complete: every message reached everyone but its author")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="a server and three scripted clients (the default)")
    srv = sub.add_parser("server", help="run the chat server")
    srv.add_argument("--port", type=int, default=8700, help="port on 127.0.0.1 (0: any free port)")
    cli = sub.add_parser("client", help="chat, reading lines from stdin")
    cli.add_argument("--port", type=int, default=8700)
    cli.add_argument("--name", required=True)
    args = parser.parse_args(argv)

    def run(reactor: Any) -> Deferred[None]:
        if args.command == "server":
            return Deferred.fromCoroutine(run_server(reactor, args.port))
        if args.command == "client":
            return Deferred.fromCoroutine(run_client(reactor, args.port, args.name))
        return Deferred.fromCoroutine(run_demo(reactor))

    task.react(run)


if __name__ == "__main__":
    main()
