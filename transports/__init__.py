"""How clients reach a session: the WebSocket protocol, WebRTC and the talk page, OpenAI's
Realtime API and audio endpoints, and Wyoming (the Discord bot's transport lives in
bots/discord/)."""
