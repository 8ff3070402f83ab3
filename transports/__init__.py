"""How clients reach a session: the WebSocket protocol, WebRTC and the talk page (the Discord
bot's transport lives in bots/discord/)."""
