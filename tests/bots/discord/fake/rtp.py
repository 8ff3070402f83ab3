"""RTP in Discord's `aead_xchacha20_poly1305_rtpsize` mode, both directions.

Layout (what discord.py sends, and what Discord sends to it): a clear RTP header
(`0x80`, or `0x90` with an extension; payload type 120; seq; timestamp; ssrc), plus
`BE DE` and the extension length in words when X=1. The clear part is the AEAD's
associated data. Then the ciphertext of (extension elements + payload) with its 16-byte
tag, then the 4-byte big-endian nonce counter; the XChaCha nonce is that counter
followed by 20 zero bytes.
"""

import struct
from dataclasses import dataclass

import nacl.secret

MODE = "aead_xchacha20_poly1305_rtpsize"
PAYLOAD_TYPE_OPUS = 0x78
HEADER_BYTES = 12
NONCE_COUNTER_BYTES = 4
OPUS_SILENCE = b"\xf8\xff\xfe"
# One one-byte-header extension element (id 1, audio level, 1 byte) padded to a word.
AUDIO_LEVEL_EXTENSION = b"\x10\x7f\x00\x00"


@dataclass(frozen=True)
class RtpPacket:
    """A decrypted RTP packet: the payload without extension elements."""

    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    has_extension: bool


def is_rtp(datagram: bytes) -> bool:
    """RTP version 2 with Discord's Opus payload type; excludes IP discovery and keepalives."""
    return (
        len(datagram) > HEADER_BYTES + NONCE_COUNTER_BYTES
        and datagram[0] >> 6 == 2
        and datagram[1] & 0x7F == PAYLOAD_TYPE_OPUS
    )


class RtpSizeCipher:
    """Seals and opens rtpsize packets with one voice session's secret key."""

    def __init__(self, secret_key: bytes) -> None:
        if len(secret_key) != 32:
            raise ValueError(f"secret_key has {len(secret_key)} bytes; XChaCha20 needs 32")
        self._aead = nacl.secret.Aead(secret_key)
        self._counter = 0

    def seal(
        self, *, sequence: int, timestamp: int, ssrc: int, payload: bytes,
        extension: bytes = b"", payload_type: int = PAYLOAD_TYPE_OPUS,
    ) -> bytes:
        """One datagram; `extension` is whole 4-byte words of extension elements (or empty)."""
        if len(extension) % 4:
            raise ValueError(f"extension has {len(extension)} bytes; it must be whole words")
        first = 0x90 if extension else 0x80
        header = struct.pack(">BBHII", first, payload_type, sequence & 0xFFFF,
                             timestamp & 0xFFFFFFFF, ssrc)
        if extension:
            header += b"\xbe\xde" + struct.pack(">H", len(extension) // 4)
        counter = struct.pack(">I", self._counter)
        self._counter = (self._counter + 1) & 0xFFFFFFFF
        sealed = self._aead.encrypt(extension + payload, header, counter + bytes(20))
        return header + sealed.ciphertext + counter

    def open(self, datagram: bytes) -> RtpPacket:
        """Decrypts one datagram; raises nacl.exceptions.CryptoError on a bad tag or key."""
        first = datagram[0]
        header_end = HEADER_BYTES + 4 * (first & 0x0F)  # CSRCs
        has_extension = bool(first & 0x10)
        extension_words = 0
        if has_extension:
            extension_words = struct.unpack_from(">H", datagram, header_end + 2)[0]
            header_end += 4
        header = datagram[:header_end]
        counter = datagram[-NONCE_COUNTER_BYTES:]
        plain = self._aead.decrypt(datagram[header_end:-NONCE_COUNTER_BYTES], header,
                                   counter + bytes(20))
        _, _, sequence, timestamp, ssrc = struct.unpack_from(">BBHII", datagram, 0)
        return RtpPacket(sequence=sequence, timestamp=timestamp, ssrc=ssrc,
                         payload=plain[4 * extension_words:], has_extension=has_extension)
