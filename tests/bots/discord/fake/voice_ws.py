"""The fake voice server: the TLS voice websocket (protocol v8) and the bot's voice session.

Flow, as discord.py 2.7.1 drives it: HELLO; IDENTIFY → READY {ssrc, ip, port, modes};
the client does IP discovery over UDP, then SELECT_PROTOCOL → SESSION_DESCRIPTION
{mode, secret_key, dave_protocol_version} and, with DAVE, op 25 (the external sender).
Binary DAVE ops go to the MLS coordinator. RESUME {…, seq_ack} → RESUMED, then the
messages the bot missed (sequence numbers after its seq_ack, buffered while it was away),
and nothing else, as Discord documents it: the session's key and DAVE group carry over.
(discord.py 2.7.1 waits for a SESSION_DESCRIPTION on every new websocket; the bot copes.)

Two TLS listeners give `change_voice_server(new_endpoint=True)` somewhere to move to.
"""

import json
import secrets
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nacl.exceptions
from aiohttp import WSMsgType, web
from loguru import logger

from tests.loopback_tls import LOOPBACK, LoopbackCertificate

from .mls_group import MlsCoordinator
from .rtp import MODE, RtpPacket, RtpSizeCipher
from .signals import Changed, TaskSet
from .udp import Address, VoiceUdp
from .world import World

OP_IDENTIFY, OP_SELECT_PROTOCOL, OP_READY, OP_HEARTBEAT = 0, 1, 2, 3
OP_SESSION_DESCRIPTION, OP_SPEAKING, OP_HEARTBEAT_ACK, OP_RESUME = 4, 5, 6, 7
OP_HELLO, OP_RESUMED, OP_CLIENTS_CONNECT = 8, 9, 11
OP_TRANSITION_READY, OP_EXTERNAL_SENDER, OP_KEY_PACKAGE = 23, 25, 26
OP_COMMIT_WELCOME, OP_INVALID_COMMIT_WELCOME = 28, 31
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_SESSION_NO_LONGER_VALID = 4006
CLOSE_UNKNOWN_ENCRYPTION_MODE = 4016
HEARTBEAT_INTERVAL_MS = 13750
MAX_BUFFERED_MESSAGES = 100  # what a resume can replay
# discord.py takes the first mode it supports, so an unsupported one goes first.
OFFERED_MODES = ["aead_aes256_gcm_rtpsize", MODE]


@dataclass
class BotVoiceSession:
    """The bot's voice session: survives a RESUME, replaced by a new IDENTIFY."""

    token: str
    session_id: str
    ssrc: int
    secret_key: bytes
    dave: bool
    ws: web.WebSocketResponse | None = None
    udp_addr: Address | None = None
    mode: str | None = None
    # The bot took SESSION_DESCRIPTION on the current websocket: it answers with op 5
    # (speaking 0) from `load_secret_key`, and sets itself `connected` right after.
    has_secret: bool = False
    described: bool = False  # SESSION_DESCRIPTION sent, op 5 not seen yet
    seq: int = 0
    sent: list[tuple[int, str | bytes]] = field(default_factory=list, repr=False)  # recent

    def __post_init__(self) -> None:
        self.cipher = RtpSizeCipher(self.secret_key)


class VoiceServer:
    """Owns the voice websocket listeners, the UDP socket and the bot's voice session."""

    def __init__(self, world: World, cert: LoopbackCertificate, changed: Changed, *, dave: bool,
                 on_rtp: Callable[[RtpPacket], None], on_bot_speaking: Callable[[dict], None]
                 ) -> None:
        self._world, self._cert, self._changed, self.dave = world, cert, changed, dave
        self._on_rtp, self._on_bot_speaking = on_rtp, on_bot_speaking
        self.mls: MlsCoordinator | None = None  # set by FakeDiscord when dave=True
        self.udp = VoiceUdp(on_discovery=self._on_discovery, on_rtp=self._on_datagram)
        self.session: BotVoiceSession | None = None
        self.endpoints: list[str] = []
        self.token: str | None = None
        self.identify_count = 0
        self.resume_count = 0
        # A NAT between the voice server and the bot that forgets the bot's mapping after
        # this long without a datagram from it (None: no NAT); what it drops is counted.
        self.nat_idle_secs: float | None = None
        self.nat_dropped_count = 0
        self.bad_packet_count = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._tasks = TaskSet("fake-voice")
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"VoiceServer({', '.join(self.endpoints)}, udp={self.udp.port})"

    async def start(self) -> None:
        await self.udp.start()
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        for _ in range(2):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            site = web.SockSite(self._runner, sock, ssl_context=self._cert.server_context())
            await site.start()
            self.endpoints.append(f"{LOOPBACK}:{sock.getsockname()[1]}")
        logger.debug("{}: listening", self)

    async def close(self) -> None:
        await self._tasks.close()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.udp.close()

    def issue_token(self) -> str:
        """A new voice token (as in VOICE_SERVER_UPDATE); only the latest one identifies."""
        self.token = secrets.token_hex(8)
        return self.token

    @property
    def is_bot_connected(self) -> bool:
        """Identified, UDP discovered and the secret key handed over on a live websocket."""
        s = self.session
        return bool(s and s.ws is not None and not s.ws.closed and s.has_secret and s.udp_addr)

    # -- BotLink -------------------------------------------------------------------------

    def _live_session(self) -> BotVoiceSession:
        s = self.session
        if s is None or s.ws is None or s.ws.closed:
            raise ConnectionError("fake Discord: the bot has no open voice websocket")
        return s

    async def send_json(self, op: int, data: object) -> None:
        s = self._session_to_send()
        s.seq += 1
        await self._send(s, json.dumps({"op": op, "d": data, "seq": s.seq}))

    async def send_binary(self, op: int, payload: bytes) -> None:
        s = self._session_to_send()
        s.seq += 1
        await self._send(s, struct.pack(">HB", s.seq & 0xFFFF, op) + payload)

    def _session_to_send(self) -> BotVoiceSession:
        if self.session is None:
            raise ConnectionError("fake Discord: the bot has no voice session")
        return self.session

    async def _send(self, s: BotVoiceSession, message: str | bytes) -> None:
        """Sends now, or only buffers while the bot's websocket is down: a RESUME replays."""
        s.sent = [*s.sent[-(MAX_BUFFERED_MESSAGES - 1):], (s.seq, message)]
        if s.ws is None or s.ws.closed:
            return
        if isinstance(message, str):
            await s.ws.send_str(message)
        else:
            await s.ws.send_bytes(message)

    async def close_bot_ws(self, code: int) -> None:
        s = self._live_session()
        logger.debug("{}: closing the bot's voice websocket with {}", self, code)
        s.has_secret = False  # not "in voice" until the bot resumes or re-identifies
        self._changed.notify()
        await s.ws.close(code=code)

    # -- websocket ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if request.query.get("v") != "8":
            logger.warning("{}: voice websocket opened with v={}", self, request.query.get("v"))
        self._sockets.add(ws)
        logger.debug("{}: voice websocket opened on {}", self, request.host)
        try:
            await ws.send_str(json.dumps(
                {"op": OP_HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS, "v": 8}}))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_json(ws, json.loads(msg.data))
                elif msg.type is WSMsgType.BINARY:
                    self._on_binary(ws, msg.data)
        finally:
            logger.debug("{}: voice websocket closed ({})", self, ws.close_code)
            self._sockets.discard(ws)
            if self.session is not None and self.session.ws is ws:
                self.session.has_secret = False
            self._changed.notify()
        return ws

    async def _on_json(self, ws: web.WebSocketResponse, msg: dict) -> None:
        op, data = msg.get("op"), msg.get("d")
        logger.trace("{}: bot sent op {}: {}", self, op, data)
        if op == OP_HEARTBEAT:
            nonce = data.get("t") if isinstance(data, dict) else data
            await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK, "d": {"t": nonce}}))
        elif op == OP_IDENTIFY:
            await self._identify(ws, data)
        elif op == OP_RESUME:
            await self._resume(ws, data)
        elif op == OP_SELECT_PROTOCOL:
            await self._select_protocol(ws, data)
        elif op == OP_SPEAKING:
            self._on_bot_speaking(data)
            s = self.session
            if s is not None and s.ws is ws and s.described:
                s.has_secret, s.described = True, False
                self._changed.notify()
        elif op == OP_TRANSITION_READY and self.mls is not None:
            self.mls.on_transition_ready(int(data["transition_id"]))
        elif op == OP_INVALID_COMMIT_WELCOME and self.mls is not None:
            self.mls.on_invalid_commit(int(data["transition_id"]))
        else:
            logger.debug("{}: ignored voice op {} from the bot: {}", self, op, data)

    def _on_binary(self, ws: web.WebSocketResponse, data: bytes) -> None:
        s = self.session
        if self.mls is None or s is None or s.ws is not ws:
            logger.warning("{}: binary op {} outside a DAVE session, ignored", self, data[0])
        elif data[0] == OP_KEY_PACKAGE:
            self._tasks.spawn(self.mls.add_bot(data[1:]), "mls-add-bot")
        elif data[0] == OP_COMMIT_WELCOME:
            self.mls.on_commit_welcome(data[1:])
        else:
            logger.warning("{}: unknown binary voice op {}, ignored", self, data[0])

    async def _identify(self, ws: web.WebSocketResponse, data: dict) -> None:
        record = self._world.voice.get(self._world.bot_user_id)
        expected = {"server_id": str(self._world.guild_id), "token": self.token,
                    "user_id": str(self._world.bot_user_id),
                    "session_id": record.session_id if record else None}
        wrong = {k: data.get(k) for k, v in expected.items() if data.get(k) != v}
        if wrong:
            logger.warning("{}: IDENTIFY rejected, mismatched {}", self, sorted(wrong))
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED)
            return
        if self.session is not None and self.session.ws is not None:
            await self.session.ws.close()
        dave = self.dave and int(data.get("max_dave_protocol_version", 0)) >= 1
        self.session = BotVoiceSession(
            token=data["token"], session_id=data["session_id"],
            ssrc=self._world.ids.next() & 0xFFFF | 0x10000, secret_key=secrets.token_bytes(32),
            dave=dave, ws=ws)
        self.identify_count += 1
        await self.send_json(OP_READY, {"ssrc": self.session.ssrc, "ip": LOOPBACK,
                                        "port": self.udp.port, "modes": OFFERED_MODES,
                                        "experiments": []})
        self._changed.notify()

    async def _resume(self, ws: web.WebSocketResponse, data: dict) -> None:
        s = self.session
        if s is None or data.get("token") != s.token or data.get("session_id") != s.session_id:
            logger.warning("{}: RESUME of an unknown session, closing", self)
            await ws.close(code=CLOSE_SESSION_NO_LONGER_VALID)
            return
        # The session, its key and its DAVE group carry over: in voice again at once.
        s.ws, s.has_secret, s.described = ws, True, False
        self.resume_count += 1
        seq_ack = int(data.get("seq_ack", -1))
        missed = [message for seq, message in s.sent if seq > seq_ack]
        await self.send_json(OP_RESUMED, None)
        for message in missed:
            await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
        self._changed.notify()

    async def _select_protocol(self, ws: web.WebSocketResponse, data: dict) -> None:
        s = self.session
        mode = data.get("data", {}).get("mode")
        if s is None or s.ws is not ws:
            await ws.close(code=CLOSE_SESSION_NO_LONGER_VALID)
            return
        if mode != MODE:
            logger.warning("{}: bot selected unsupported mode {!r}", self, mode)
            await ws.close(code=CLOSE_UNKNOWN_ENCRYPTION_MODE)
            return
        s.mode = mode
        if s.udp_addr is None:  # no discovery seen: trust what the client says it is
            s.udp_addr = (data["data"]["address"], int(data["data"]["port"]))
        await self._describe_session(s)
        others = [str(uid) for uid in self._world.in_channel(self._world.bot_channel_id())
                  if uid != self._world.bot_user_id]
        if others:
            await self.send_json(OP_CLIENTS_CONNECT, {"user_ids": others})

    async def _describe_session(self, s: BotVoiceSession) -> None:
        await self.send_json(OP_SESSION_DESCRIPTION, {
            "mode": s.mode, "secret_key": list(s.secret_key), "audio_codec": "opus",
            "video_codec": "H264", "media_session_id": secrets.token_hex(16),
            "dave_protocol_version": self._protocol_version(s),
        })
        if self._protocol_version(s):
            self.mls.on_session_started()  # discord.py now makes a new DaveSession
            await self.send_binary(OP_EXTERNAL_SENDER, self.mls.sender.package)
        s.has_secret, s.described = False, True

    def _protocol_version(self, s: BotVoiceSession) -> int:
        """The call's DAVE version: 0 without DAVE, or after a downgrade."""
        return self.mls.protocol_version if s.dave and self.mls is not None else 0

    # -- UDP ---------------------------------------------------------------------------

    def _on_discovery(self, ssrc: int, addr: Address) -> None:
        if self.session is not None and self.session.ssrc == ssrc:
            self.session.udp_addr = addr
            self._changed.notify()

    def _on_datagram(self, datagram: bytes, addr: Address) -> None:
        s = self.session
        if s is None or addr != s.udp_addr:
            logger.trace("{}: RTP from unknown {} ignored", self, addr)
            return
        try:
            packet = s.cipher.open(datagram)
        except (nacl.exceptions.CryptoError, ValueError, IndexError) as e:
            self.bad_packet_count += 1
            logger.warning("{}: could not open the bot's RTP packet: {}", self, e)
            return
        self._on_rtp(packet)

    def send_rtp(self, datagram: bytes) -> None:
        """Sends a sealed RTP datagram to the bot's UDP socket."""
        s = self.session
        if s is None or s.udp_addr is None:
            raise ConnectionError("fake Discord: the bot has no UDP address yet")
        if self.nat_idle_secs is not None:
            idle_secs = time.monotonic() - self.udp.last_received_at.get(s.udp_addr, 0.0)
            if idle_secs > self.nat_idle_secs:
                self.nat_dropped_count += 1
                return
        self.udp.send(datagram, s.udp_addr)
