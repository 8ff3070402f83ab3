"""RTP as Discord's voice servers send it in the `*_rtpsize` modes, and its transport decryption.

In rtpsize modes the fixed header, the CSRCs and the 4-byte extension preamble stay clear (they
are the AEAD's associated data); the extension body, the payload and any padding are encrypted,
and a 32-bit nonce counter is appended after the tag.
"""

import struct
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret

SUPPORTED_MODE = "aead_xchacha20_poly1305_rtpsize"
_FIXED_HEADER_BYTES = 12
_NONCE_COUNTER_BYTES = 4
_TAG_BYTES = 16
OPUS_PAYLOAD_TYPE = 120  # Discord's audio; video (and its retransmissions) use others


class TransportDecryptError(ValueError):
    """A datagram that fails authentication or is malformed; it is dropped and counted."""


@dataclass(frozen=True)
class RtpPacket:
    """One received voice datagram, still encrypted."""

    sequence: int
    timestamp: int
    ssrc: int
    aad: bytes  # the clear header, authenticated by the AEAD
    ciphertext: bytes
    nonce_counter: bytes
    extension_body_bytes: int  # encrypted extension elements that precede the payload
    has_padding: bool


def parse_rtp(datagram: bytes) -> RtpPacket | None:
    """The Opus RTP packet in `datagram`, or None for anything else (IP discovery, RTCP,
    keepalives, video)."""
    if len(datagram) < _FIXED_HEADER_BYTES + _TAG_BYTES + _NONCE_COUNTER_BYTES:
        return None
    first, second = datagram[0], datagram[1]
    if first >> 6 != 2 or (second & 0x7F) != OPUS_PAYLOAD_TYPE:
        return None
    sequence, timestamp, ssrc = struct.unpack_from(">HII", datagram, 2)
    header_bytes = _FIXED_HEADER_BYTES + 4 * (first & 0x0F)
    extension_body_bytes = 0
    if first & 0x10:  # X: a 4-byte preamble (profile, length in 32-bit words) stays clear
        if len(datagram) < header_bytes + 4:
            return None
        (words,) = struct.unpack_from(">H", datagram, header_bytes + 2)
        extension_body_bytes = 4 * words
        header_bytes += 4
    body = datagram[header_bytes:]
    if len(body) < _TAG_BYTES + _NONCE_COUNTER_BYTES:
        return None
    return RtpPacket(
        sequence=sequence, timestamp=timestamp, ssrc=ssrc, aad=datagram[:header_bytes],
        ciphertext=body[:-_NONCE_COUNTER_BYTES], nonce_counter=body[-_NONCE_COUNTER_BYTES:],
        extension_body_bytes=extension_body_bytes, has_padding=bool(first & 0x20),
    )


def decrypt_payload(packet: RtpPacket, secret_key: bytes) -> bytes:
    """The packet's media payload (a DAVE frame, or plain Opus without DAVE)."""
    nonce = packet.nonce_counter + bytes(24 - _NONCE_COUNTER_BYTES)
    try:
        plain = nacl.secret.Aead(secret_key).decrypt(packet.ciphertext, packet.aad, nonce)
    except nacl.exceptions.CryptoError as e:
        raise TransportDecryptError(f"transport decryption failed: {e}") from None
    if packet.has_padding:
        if not plain or plain[-1] > len(plain):
            raise TransportDecryptError("bad RTP padding")
        plain = plain[: len(plain) - plain[-1]]
    if packet.extension_body_bytes > len(plain):
        raise TransportDecryptError("RTP header extension longer than the packet")
    return plain[packet.extension_body_bytes:]
