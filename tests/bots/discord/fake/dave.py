"""The voice server's half of DAVE: the MLS external sender, its signed proposals, op 28 split.

davey can be a group member but not the voice server: it cannot make the external
sender or sign external proposals. Discord's server does both, so the fake does them
here with `cryptography`, byte for byte as RFC 9420 lays them out (ciphersuite 2:
P-256, ECDSA with SHA-256). Only what the fake needs: Add and Remove proposals, and the
references that revoke them.
"""

import hashlib
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

MLS10 = b"\x00\x01"
WIRE_PUBLIC_MESSAGE = b"\x00\x01"
SENDER_EXTERNAL = b"\x02"
CONTENT_PROPOSAL = b"\x02"
CONTENT_COMMIT = 3
PROPOSAL_ADD = b"\x00\x01"
PROPOSAL_REMOVE = b"\x00\x03"
CREDENTIAL_BASIC = b"\x00\x01"


def opaque(data: bytes) -> bytes:
    """RFC 9420 opaque<V>: a QUIC-style variable-length size, then the bytes."""
    size = len(data)
    if size < 1 << 6:
        return bytes([size]) + data
    if size < 1 << 14:
        return struct.pack(">H", 0x4000 | size) + data
    return struct.pack(">I", 0x80000000 | size) + data


def read_opaque(data: bytes, offset: int) -> tuple[bytes, int]:
    """Reads one opaque<V> at `offset`; returns it and the offset after it."""
    prefix = data[offset] >> 6
    if prefix == 0:
        size, offset = data[offset], offset + 1
    elif prefix == 1:
        size, offset = struct.unpack_from(">H", data, offset)[0] & 0x3FFF, offset + 2
    elif prefix == 2:
        size, offset = struct.unpack_from(">I", data, offset)[0] & 0x3FFFFFFF, offset + 4
    else:
        raise ValueError(f"invalid MLS varint prefix 0b11 at offset {offset}")
    end = offset + size
    if end > len(data):
        raise ValueError(f"opaque<V> of {size} bytes at {offset} runs past {len(data)} bytes")
    return data[offset:end], end


class ExternalSender:
    """The fake voice server's signing key, as DAVE's op 25 announces it to every member."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        public = self._key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        # ExternalSender{signature_key<V>, Credential{basic, identity<V>}}; the identity is unused.
        self.package: bytes = opaque(public) + CREDENTIAL_BASIC + opaque(b"\x00")

    def add_proposals(self, channel_id: int, epoch: int, key_packages: list[bytes]) -> bytes:
        """Op 27's payload after the optype byte: signed Adds for these key packages."""
        return proposals_payload(self.add_messages(channel_id, epoch, key_packages))

    def add_messages(self, channel_id: int, epoch: int, key_packages: list[bytes]) -> list[bytes]:
        """One signed Add proposal (an MLSMessage) per key package."""
        return self._messages(channel_id, epoch, [PROPOSAL_ADD + kp for kp in key_packages])

    def remove_proposals(self, channel_id: int, epoch: int, leaf_indexes: list[int]) -> bytes:
        """Op 27's payload after the optype byte: signed Removes for these leaves."""
        bodies = [PROPOSAL_REMOVE + struct.pack(">I", leaf) for leaf in leaf_indexes]
        return proposals_payload(self._messages(channel_id, epoch, bodies))

    def _messages(self, channel_id: int, epoch: int, bodies: list[bytes]) -> list[bytes]:
        out = []
        for body in bodies:
            # MLSMessage(mls10, public_message) / FramedContent from the external sender 0.
            content = (
                MLS10 + WIRE_PUBLIC_MESSAGE + opaque(struct.pack(">Q", channel_id))
                + struct.pack(">Q", epoch) + SENDER_EXTERNAL + b"\x00" * 4
                + opaque(b"") + CONTENT_PROPOSAL + body
            )
            # SignWithLabel(key, "FramedContentTBS", content): DER ECDSA over the labelled TBS.
            tbs = opaque(b"MLS 1.0 FramedContentTBS") + opaque(content)
            out.append(content + opaque(self._key.sign(tbs, ec.ECDSA(hashes.SHA256()))))
        return out


def proposals_payload(messages: list[bytes]) -> bytes:
    """Op 27 (append)'s payload after the optype byte: the proposals, one opaque<V>."""
    return opaque(b"".join(messages))


def revoke_payload(messages: list[bytes]) -> bytes:
    """Op 27 (revoke)'s payload after the optype byte: the ProposalRefs of `messages`.

    RFC 9420: ProposalRef = RefHash("MLS 1.0 Proposal Reference", AuthenticatedContent), and
    an external sender's AuthenticatedContent is its MLSMessage less the 2-byte version.
    """
    refs = [hashlib.sha256(opaque(b"MLS 1.0 Proposal Reference") + opaque(m[2:])).digest()
            for m in messages]
    return opaque(b"".join(opaque(ref) for ref in refs))


def split_commit_welcome(data: bytes) -> tuple[bytes, bytes | None]:
    """Splits op 28 (commit, then welcome, no length prefix between them).

    Walks the commit's PublicMessage field by field; whatever follows it is the Welcome.
    Add-only commits carry no UpdatePath; a commit with a Remove does.
    """
    offset = 4  # version, wire format
    _, offset = read_opaque(data, offset)  # group_id
    offset += 8  # epoch
    sender_type = data[offset]
    offset += 1 + (4 if sender_type in (1, 2) else 0)  # member leaf index / external index
    _, offset = read_opaque(data, offset)  # authenticated_data
    content_type = data[offset]
    if content_type != CONTENT_COMMIT:
        raise ValueError(f"op 28 starts with content type {content_type}, expected a commit (3)")
    offset += 1
    _, offset = read_opaque(data, offset)  # proposals
    has_path = data[offset]
    offset += 1
    if has_path:
        offset = _skip_leaf_node(data, offset)
        _, offset = read_opaque(data, offset)  # UpdatePathNode nodes<V>
    for _field in ("signature", "confirmation_tag", "membership_tag"):
        _, offset = read_opaque(data, offset)
    return data[:offset], (data[offset:] or None)


def _skip_leaf_node(data: bytes, offset: int) -> int:
    """Skips an RFC 9420 LeafNode (the UpdatePath's new leaf) with a basic credential."""
    for _field in ("encryption_key", "signature_key"):
        _, offset = read_opaque(data, offset)
    credential_type = struct.unpack_from(">H", data, offset)[0]
    if credential_type != 1:
        raise ValueError(f"leaf credential type {credential_type}; DAVE uses basic (1)")
    _, offset = read_opaque(data, offset + 2)  # identity
    for _field in ("versions", "cipher_suites", "extensions", "proposals", "credentials"):
        _, offset = read_opaque(data, offset)
    source = data[offset]
    offset += 1
    if source == 1:
        offset += 16  # Lifetime: not_before, not_after
    elif source == 3:
        _, offset = read_opaque(data, offset)  # parent_hash
    _, offset = read_opaque(data, offset)  # extensions
    _, offset = read_opaque(data, offset)  # signature
    return offset
