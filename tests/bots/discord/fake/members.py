"""A fake guild member: an identity, an SSRC, its own DAVE session, and a voice to speak with."""

from __future__ import annotations

from typing import TYPE_CHECKING

import davey
import numpy as np

if TYPE_CHECKING:
    from .sender import MediaSender


class FakeMember:
    """One user of the fake guild, as the bot sees them.

    `session` is this member's own davey.DaveSession: the coordinator (mls_group.py)
    creates and re-keys it, and it is what encrypts the member's speech end to end,
    exactly as a real Discord client would. Audio methods need the bot in voice.
    """

    def __init__(self, *, user_id: int, name: str, ssrc: int, bot: bool,
                 sender: MediaSender) -> None:
        self.user_id = user_id
        self.name = name
        self.ssrc = ssrc
        self.bot = bot
        self.session: davey.DaveSession | None = None
        self.sent_opus: list[bytes] = []  # every voice frame speak() sent, before DAVE
        self._sender = sender

    def __repr__(self) -> str:
        return f"FakeMember({self.name!r}, user_id={self.user_id}, ssrc={self.ssrc})"

    async def speak(self, pcm: bytes | np.ndarray, *, sample_rate: int = 16000,
                    header_extension: bool = False, announce: bool = True) -> int:
        """Sends int16 mono speech to the bot as Opus RTP, paced in real time (20 ms frames).

        Announces with op 5 SPEAKING first (unless announce=False) and ends with Opus
        silence and speaking 0. Returns the number of voice frames sent.
        """
        return await self._sender.speak(self, pcm, sample_rate=sample_rate,
                                        header_extension=header_extension, announce=announce)

    async def announce(self, *, speaking: bool = True) -> None:
        """Sends the bot op 5 SPEAKING {user_id, ssrc, speaking} for this member."""
        await self._sender.announce(self, speaking=speaking)

    async def send_replayed_packet(self) -> None:
        """Re-sends this member's last DAVE frame in a new, correctly sealed RTP packet."""
        await self._sender.send_replayed(self)

    async def send_corrupted_packet(self) -> None:
        """Sends a fresh DAVE frame whose ciphertext has a flipped bit (transport seal valid)."""
        await self._sender.send_corrupted(self)
