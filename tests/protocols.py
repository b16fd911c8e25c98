"""Protocols the behaviour tests share."""

import asyncio


class Events(asyncio.Protocol):
    """Records the callbacks it gets, in order (a run of data_received counts once),
    and the bytes; `lost` resolves with connection_lost's exception."""

    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data
        if not self.events or self.events[-1] != "data":
            self.events.append("data")

    def eof_received(self):
        self.events.append("eof")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        if not self.lost.done():
            self.lost.set_result(exc)
