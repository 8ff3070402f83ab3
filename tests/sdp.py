"""SDP a test can offer a voxline worker without a browser."""

from aiortc import RTCPeerConnection


async def audio_offer_sdp() -> str:
    """A browser-like audio offer; its peer never answers, so the server's peer never connects
    (it gives up after `webrtc.connect_timeout_secs`)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp
