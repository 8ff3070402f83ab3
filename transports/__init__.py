"""How clients reach a session: the WebSocket protocol (WebRTC and Discord come later)."""
