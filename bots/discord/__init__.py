"""`voxline discord`: a bot that joins a voice channel, hears each member, answers by voice.

Receive is ours (discord.py has none): RTP → transport decryption → DAVE → Opus → 16 kHz, per
speaker. Each member who speaks gets their own `run_session`; their replies take turns on the
one bot voice of the channel.
"""
