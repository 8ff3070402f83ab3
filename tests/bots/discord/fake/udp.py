"""The fake voice server's UDP socket: IP discovery, the bot's RTP in, fake members' RTP out.

discord.py `connect()`s its UDP socket to the READY ip:port, so everything the bot
receives must come from this one socket. Datagrams that are neither a 74-byte
discovery request nor RTP are ignored; 8-byte ones (the keepalive discord.js and voice_recv
send) are counted. When and from where each datagram came is kept: a NAT in front of the bot
forwards to it only while it has sent something recently.
"""

import asyncio
import struct
import time
from collections.abc import Callable

from loguru import logger

from tests.loopback_tls import LOOPBACK

from .rtp import is_rtp

DISCOVERY_BYTES = 74
DISCOVERY_REQUEST = 1
DISCOVERY_RESPONSE = 2
KEEPALIVE_BYTES = 8

Address = tuple[str, int]


class VoiceUdp(asyncio.DatagramProtocol):
    """One UDP socket on 127.0.0.1; the voice server owns it and closes it."""

    def __init__(self, *, on_discovery: Callable[[int, Address], None],
                 on_rtp: Callable[[bytes, Address], None]) -> None:
        self._on_discovery = on_discovery
        self._on_rtp = on_rtp
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.keepalive_count = 0
        self.last_received_at: dict[Address, float] = {}  # time.monotonic()

    def __repr__(self) -> str:
        return f"VoiceUdp(port={self.port})"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(LOOPBACK, 0))
        self.port = self._transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.last_received_at[addr] = time.monotonic()
        if len(data) == DISCOVERY_BYTES and struct.unpack_from(">H", data)[0] == DISCOVERY_REQUEST:
            ssrc = struct.unpack_from(">I", data, 4)[0]
            reply = bytearray(DISCOVERY_BYTES)
            struct.pack_into(">HHI", reply, 0, DISCOVERY_RESPONSE, 70, ssrc)
            host = addr[0].encode("ascii")
            reply[8:8 + len(host)] = host  # NUL-terminated: the rest is zeros
            struct.pack_into(">H", reply, 72, addr[1])
            self.send(bytes(reply), addr)
            self._on_discovery(ssrc, addr)
        elif is_rtp(data):
            self._on_rtp(data, addr)
        elif len(data) == KEEPALIVE_BYTES:
            self.keepalive_count += 1
        else:
            logger.trace("{}: ignored a {}-byte datagram from {}", self, len(data), addr)

    def send(self, data: bytes, addr: Address) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ConnectionError(f"{self}: the UDP socket is closed")
        self._transport.sendto(data, addr)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
